"""The Python API, for notebooks and in-process tests: the command line's run and a trained run's
model, without a subprocess.

    import resnet_exp
    run = resnet_exp.run(["model=resnet20", "trainer.max_epochs=2"])
    print(run.dir, run.status, run.metrics["test/acc"])
    trained = resnet_exp.load_run(run.dir)
    logits = trained.model(images)  # an nn.Module in eval mode, with the best checkpoint's weights

`run` is `python -m resnet_exp OVERRIDES` in this process: the same Hydra composition, output
folder check, run folder and records (README's "Python API"). `load_run` is the loader eval and
analyze use (runs/load.py): the run's config under the same allow-list (docs/security.md), its
parts built, its best weights loaded.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from resnet_exp.core.config import quote
from resnet_exp.runs import read
from resnet_exp.runs.load import Loaded, load
from resnet_exp.runs.replay import ONE_JOB


@dataclass(frozen=True)
class Run:
    """A run that `run` made: its folder, run.json's status, and its metrics.json."""

    dir: Path
    status: str | None
    metrics: dict[str, Any] = field(default_factory=dict)


def run(overrides: list[str] | tuple[str, ...] = (), output_dir: str | Path | None = None,
        note: dict | None = None) -> Run:
    """One run of `overrides` in this process, in `output_dir` or the folder Hydra picks
    (outputs/runs/<date>_<time>_<name>/). An error of the run is raised (a UserError for what
    the user can fix); a setting refused before the run folder is made prints its one line and
    raises SystemExit(2), as the command line exits. `note` is recorded in the new run's
    run.json (reproduce's `reproduces`)."""
    import hydra

    from resnet_exp.callbacks.guards import exit_on_sigterm
    from resnet_exp.core.config import CONF_DIR, register_resolvers
    from resnet_exp.runs import record
    from resnet_exp.runs.context import RunContext
    from resnet_exp.train import train

    register_resolvers()  # conf/'s own (job_folder, monitor_mode): __main__ registers them too
    result: dict = {}

    @hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
    def job(cfg: DictConfig) -> None:
        context = RunContext.from_hydra()
        result["dir"] = context.run_dir
        if note:
            record.note(context.run_dir, **note)  # RunRecord.start keeps it
        try:
            with exit_on_sigterm():
                result["metrics"] = train(cfg, context)
        except Exception as e:  # raised through Hydra, it would print its traceback and exit
            result["error"] = e

    given = [*overrides, *([f"hydra.run.dir={quote(output_dir)}"] if output_dir else []), ONE_JOB]
    argv = sys.argv
    sys.argv = [argv[0], *given]
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        job()
    finally:
        sys.argv = argv
        # Hydra pointed the root logger at this run's log file: what the notebook logs next
        # is not this run's
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
            handler.close()
        for handler in [h for h in handlers if h not in root.handlers]:
            root.addHandler(handler)
        root.setLevel(level)
    if "error" in result:
        raise result["error"]
    status = read.run_status(result["dir"])
    return Run(Path(result["dir"]), status, dict(result.get("metrics") or {}))


def load_run(run_dir: str | Path, which: str = "best", trust: bool = False,
             overrides: list[str] | tuple[str, ...] = ()) -> Loaded:
    """The run in `run_dir` (runs/load.py): `.cfg`, its config replayed (refused when it names
    code outside the allow-list, unless `trust`); `.model`, its network in eval mode with the
    `which` ("best", "last" or a checkpoint's path) checkpoint's weights; `.metrics`. `overrides`
    change what is built, e.g. `trainer.accelerator=cpu` for a run trained on a GPU."""
    return load(run_dir, which, overrides, trust)
