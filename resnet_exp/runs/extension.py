"""The one seam through which a feature plugs into a run.

A feature that is not the network, the data or the optimizer (Optuna pruning, MLflow,
TensorBoard's HPARAMS, per-class results, gradient flow, the analyses) is an object the config
chooses by `_target_`, as a callback (`callbacks.*`), a logger (`logger.*`) or the `analysis`
node, that is also an `Extension`: it overrides the moments it needs, each a no-op here. `train`
calls every moment on every part of the run that is an extension, in the config's order; it never
asks what a part is.

    check(model)               before any data is read: refuse a model it cannot serve
    resume_arguments(resumed)  (a classmethod: read before it is built) its constructor's
                               arguments that continue an interrupted run in its folder
    start(run)                 the parts are built and the run is about to fit
    results()                  what it adds to metrics.json, once the run is tested
    places()                   where it put the run's record (a URL), for the run's summary
    status()                   the run's final status where the feature decides it (pruned)
    finish(end)                the run's settings and results, recorded (every rank calls it)
    after(end)                 work once the run is recorded as ended (rank zero alone)

A Lightning logger that is not an extension gets `LoggerRecord`'s `finish`: its settings as
hyperparameters and the final numbers as metrics. docs/extending.md shows an extension written
in one file and chosen from the command line.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from resnet_exp.runs.context import RunContext


@dataclass(frozen=True)
class Resumed:
    """Where an interrupted run continues: its folder and the optimizer step of its last.ckpt."""

    run_dir: Path
    step: int


@dataclass(frozen=True)
class RunStart:
    """The run as it starts fitting: its context, its run.json (`record.update(...)` adds keys;
    a no-op on ranks other than zero) and whether this process is rank zero."""

    context: RunContext
    record: Any  # runs.record.RunRecord
    rank_zero: bool = True


@dataclass(frozen=True)
class RunEnd:
    """The run once tested: what it was (`settings`, the HPARAMS columns: runs/hparams.py) and what
    it gave (`metrics`, metrics.json as written), with its parts, for the work after it."""

    context: RunContext
    monitor: str
    settings: dict
    metrics: dict
    status: str
    trainer: Any = None  # pytorch_lightning.Trainer
    module: Any = None  # the LightningModule
    datamodule: Any = None
    rank_zero: bool = True
    # the numbers not logged as scalars during the run, for each logger to add to its curves
    final: dict = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.context.run_dir


class Extension:
    """A feature's part in a run: override the moments it needs (see the module docstring)."""

    def check(self, model) -> None:
        """Raise UserError for a model this feature cannot serve, before any data is read."""

    @classmethod
    def resume_arguments(cls, resumed: Resumed) -> dict:
        """Constructor arguments that continue the interrupted run in `resumed.run_dir`."""
        return {}

    def start(self, run: RunStart) -> None:
        """The run's parts are built; it is about to fit."""

    def results(self) -> dict:
        """What this feature adds to metrics.json (nested values are fine)."""
        return {}

    def places(self) -> dict[str, str]:
        """Where this feature put the run's record, by label (an MLflow run's URL), printed
        whole under the run's summary."""
        return {}

    def status(self) -> str | None:
        """The run's final status, where this feature decides it; None leaves it `finished`."""
        return None

    def finish(self, end: RunEnd) -> None:
        """Record the run's settings and results; called on every rank."""

    def after(self, end: RunEnd) -> None:
        """Work once the run is recorded as ended; rank zero only."""


class LoggerRecord(Extension):
    """What a Lightning logger that is not an extension records at the end of a run."""

    def __init__(self, logger) -> None:
        self.logger = logger

    def finish(self, end: RunEnd) -> None:
        self.logger.log_metrics(end.final, step=end.trainer.global_step)
        self.logger.log_hyperparams(end.settings)
        self.logger.save()


def extensions(parts: Iterable, loggers: Iterable = ()) -> list[Extension]:
    """The extensions among a run's `parts` (callbacks, the analysis node), then one per logger."""
    chosen = [p for p in parts if isinstance(p, Extension)]
    return chosen + [lg if isinstance(lg, Extension) else LoggerRecord(lg) for lg in loggers]


def resume_arguments(target: type | None, resumed: Resumed | None) -> dict:
    """The resume arguments of the class a config node names (`target`), if it is an extension."""
    if resumed is None or not (isinstance(target, type) and issubclass(target, Extension)):
        return {}
    return target.resume_arguments(resumed)
