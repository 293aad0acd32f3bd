"""`python -m resnet_exp [group=option ...] [key=value ...]`: one run, or a sweep with `-m`.

Imports only Hydra at module level: `--help` and `--cfg job` answer without loading torch.
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from pathlib import Path

import hydra
from omegaconf import DictConfig

from resnet_exp.core.config import CONF_DIR, check_run_settings, register_resolvers
from resnet_exp.core.errors import UserError, report_error
from resnet_exp.runs.context import RunContext

register_resolvers()  # here: a joblib or submitit worker imports this module to run a job


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    context = RunContext.from_hydra()  # the one read of Hydra's run state (runs/context.py)
    sweep_job = context.multirun
    # A failed job of a sweep is recorded as failed in its run.json, and the sweep goes on to end
    # with its table, the job marked. Hydra's basic sweeper would stop after the batch at a
    # raised error, print its traceback twice and skip the table, so that job returns NaN (a
    # SystemExit would end a joblib worker). The Optuna sweeper (hydra_plugins/) records a raised
    # error as a FAIL trial and goes on: there the error is raised, its traceback kept.
    returns_nan = sweep_job and not records_job_errors(context.sweeper.get("_target_"))
    try:
        check_run_settings(cfg)  # before torch loads (5 s): a wrong setting answers at once
        from resnet_exp.callbacks.guards import exit_on_sigterm
        from resnet_exp.train import train  # torch and Lightning load here, when a run starts

        with exit_on_sigterm():  # a scheduler's SIGTERM: recorded as interrupted, status 143
            metrics = train(cfg, context)
    except UserError as e:
        status = report_error(e)
        if returns_nan:
            return math.nan
        if sweep_job:
            raise
        sys.exit(status)
    except Exception:
        if not returns_nan:
            raise
        traceback.print_exc()
        return math.nan
    # The sweep objective (Optuna and other sweepers maximise it): the best validation score.
    # NaN or None (no validation) is recorded by the Optuna sweeper as a FAIL trial, a run its
    # pruner stopped (status `pruned` in run.json) as PRUNED.
    return metrics.get(f"{cfg.monitor}_best", metrics.get(cfg.monitor))


def records_job_errors(sweeper_target: str | None) -> bool:
    """Whether the sweeper records a job's raised error itself (a FAIL trial: the Optuna
    sweeper's `records_job_errors`), so that the job raises it rather than returning NaN."""
    from hydra.utils import get_class

    try:
        return bool(getattr(get_class(sweeper_target), "records_job_errors", False))
    except Exception:  # no sweeper, or one that does not import: Hydra's own
        return False


def config_dirs(args: list[str]) -> list[Path]:
    """The folders given with `--config-dir DIR`, `-cd DIR` or `--config-dir=DIR`."""
    found = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            found.append(Path(args[i + 1]))
        elif arg.startswith("--config-dir="):
            found.append(Path(arg.split("=", 1)[1]))
    return found


def check_readable(folder: Path) -> None:
    """Every YAML file of a user's config folder parses: Hydra would end in a traceback from
    deep inside its config loader at the first one that does not."""
    import yaml

    for path in sorted(folder.rglob("*.yaml")) if folder.is_dir() else []:
        try:
            yaml.safe_load(path.read_text())
        except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"{path} is not a readable YAML file ({first}): fix or remove it, "
                            "it is in the --config-dir folder") from None


def cli() -> None:
    """The command: `resume=RUN_DIR` first becomes that run's own overrides and folder."""
    if sys.argv[1:2] == ["runs"]:  # `resnet-exp runs list`: no Hydra override is a bare word
        from resnet_exp.runs.__main__ import main as runs

        sys.exit(runs(sys.argv[2:], prog="resnet-exp runs"))
    from resnet_exp.core import usage
    from resnet_exp.runs import resume

    help_text = usage.text(sys.argv[1:])  # Hydra's own help generator costs 0.45-2 s: usage.py
    if help_text is not None:
        try:
            print(help_text, flush=True)
        except BrokenPipeError:  # `--help | head`: the reader has all it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return
    try:
        for folder in config_dirs(sys.argv[1:]):
            check_readable(folder)
        sys.argv = resume.command_line(sys.argv)
    except UserError as e:
        sys.exit(report_error(e))
    main()


if __name__ == "__main__":
    cli()
