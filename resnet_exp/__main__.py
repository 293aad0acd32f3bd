"""`python -m resnet_exp [group=option ...] [key=value ...]`: one run, or a sweep with `-m`.

Imports only Hydra at module level: `--help` and `--cfg job` answer without loading torch.
"""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from resnet_exp.errors import UserError


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    from resnet_exp.guards import exit_on_sigterm
    from resnet_exp.train import train  # torch and Lightning load here, when a run starts

    try:
        with exit_on_sigterm():  # a scheduler's SIGTERM: recorded as interrupted, status 143
            metrics = train(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # A sweep job: SystemExit would end the whole sweep from inside one job (and a joblib
            # worker with it); raised, the launcher records this job as failed and the sweeper
            # decides (Hydra's basic sweeper stops after the batch, Optuna marks the trial FAIL).
            raise
        sys.exit(2)
    # The sweep objective (Optuna and other sweepers maximise it): the best validation score.
    # NaN or None (no validation) is recorded by the Optuna sweeper as a FAIL trial.
    return metrics.get(f"{cfg.monitor}_best", metrics.get(cfg.monitor))


def cli() -> None:
    """The command: `resume=RUN_DIR` first becomes that run's own overrides and folder."""
    from resnet_exp import resume, usage

    help_text = usage.text(sys.argv[1:])  # Hydra's own help generator costs 0.45-2 s: usage.py
    if help_text is not None:
        print(help_text)
        return
    try:
        sys.argv = resume.command_line(sys.argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    main()


if __name__ == "__main__":
    cli()
