"""Where the callbacks write: the run's TensorBoard logger and its figures folder."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.loggers import TensorBoardLogger

from resnet_exp.core import figures
from resnet_exp.runs import FIGURES_DIR


def tensorboard(trainer: pl.Trainer) -> TensorBoardLogger | None:
    """The trainer's TensorBoard logger, if it has one."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


def figures_dir(trainer: pl.Trainer, output_dir: str | Path | None) -> Path:
    """`<run>/figures`: under `output_dir` (the callbacks get `${hydra:runtime.output_dir}`),
    else under the trainer's default_root_dir."""
    return Path(output_dir or trainer.default_root_dir) / FIGURES_DIR


def save_figure(trainer: pl.Trainer, output_dir: str | Path | None, fig, name: str,
                tag: str) -> None:
    """`<run>/figures/<name>.png` and TensorBoard image `tag` at the current step."""
    logger = tensorboard(trainer)
    figures.save(fig, figures_dir(trainer, output_dir) / f"{name}.png",
                 logger.experiment if logger else None, tag, trainer.global_step)
