"""A trained run given back: the one loader that eval, analyze and the Python API read runs with.

    loaded = load("outputs/runs/<run>")          # its best checkpoint
    loaded.model(images)                          # an nn.Module with those weights, in eval mode
    loaded.parts.trainer.test(loaded.parts.module, datamodule=loaded.parts.datamodule)

The run's config is composed again from its saved overrides (replay.py: the layout check and
migrate.py for older folders, the allow-list unless `trust`, the drift warning), its parts are
assembled as for a test (train.assemble, no checkpoint callback), and the checkpoint is read with
weights_only=True and must fit the module the config builds. What the parts write when used
(loggers, figures) goes to `output_dir`: eval gives its own folder; the run's own by default.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from resnet_exp.runs import migrate, read
from resnet_exp.runs.context import RunContext
from resnet_exp.runs.replay import replay

# Lightning's set-up lines ("Seed set to 42", "GPU available: ...") for a trainer that loading
# builds and nobody has asked to run: noise in a notebook, and after a run in the same process
# they reach its stdout through the handler Hydra set up.
SET_UP_LOGGERS = ("lightning_fabric.utilities.seed", "pytorch_lightning.utilities.rank_zero")


@dataclass(frozen=True)
class Loaded:
    """dir: the run's folder; cfg: its config composed again, with Hydra's node; overrides: those
    it was composed from; context: the run context `cfg.hydra` describes; parts: train.Parts,
    the module holding the checkpoint's weights; checkpoint: the file read, and `epoch`, the
    epoch it was written at (counted from 1); metrics: the run's metrics.json ({} before it
    finished)."""

    dir: Path
    cfg: DictConfig
    overrides: list[str]
    context: RunContext
    parts: Any  # train.Parts; train imports torch and Lightning, this module does not
    checkpoint: Path
    epoch: int | None
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> DictConfig:
        """`cfg` without Hydra's node: what the run itself was given."""
        return OmegaConf.masked_copy(self.cfg, [k for k in self.cfg if k != "hydra"])

    @property
    def model(self):
        """The network (an nn.Module), with the checkpoint's weights."""
        return self.parts.model


def load(run_dir: str | Path, which: str | Path = "best", overrides: list[str] | tuple = (),
         trust: bool = False, output_dir: str | Path | None = None) -> Loaded:
    """The trained run in `run_dir` with the weights of `which`: "best", "last" or the path of a
    checkpoint. `overrides` change what is built (e.g. `data=cifar10`, `trainer.accelerator=cpu`
    for a run trained on a GPU); `trust` accepts targets outside the allow-list (trust.py).
    A UserError says why a folder cannot be loaded: not a run, a newer layout, no such
    checkpoint, a refused config, weights that do not fit the model."""
    from resnet_exp.train import assemble
    from resnet_exp.training import checkpoints

    run_dir = Path(run_dir)
    layout = migrate.check(run_dir)  # before anything of the folder is read by today's layout
    read.load_config(run_dir)  # one line when the folder is not a run, before the checkpoint's
    path = read.checkpoint_path(run_dir, str(which)) if which in ("best", "last") else Path(which)
    output_dir = Path(output_dir) if output_dir is not None else run_dir
    replayed, cfg = replay(run_dir, list(overrides), trust, output_dir=output_dir)
    context = RunContext.of(cfg.hydra)
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    with _quiet(SET_UP_LOGGERS):
        parts = assemble(task, context, testing=True)
    checkpoint = checkpoints.load(path)
    checkpoints.check_compatible(parts.module, checkpoint, path)
    parts.module.load_state_dict(checkpoint["state_dict"])
    parts.module.eval()
    epoch = checkpoint.get("epoch")  # Lightning's, from 0; people count from 1
    return Loaded(run_dir, cfg, replayed, context, parts, path,
                  None if epoch is None else epoch + 1,
                  migrate.metrics(read.read_metrics(run_dir), layout))


@contextmanager
def _quiet(names: tuple[str, ...]) -> Iterator[None]:
    """The loggers `names` pass warnings and errors only, inside the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(max(each.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)
