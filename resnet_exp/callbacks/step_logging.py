"""How often step metrics (train/loss_step, the per-step gradient statistics' logging) reach the
logger: `trainer.log_every_n_steps`, or once per epoch where an epoch is shorter (Lightning
warns otherwise, and the digits' 20-batch epochs would log a step point only every 2.5
epochs)."""

from __future__ import annotations

import math

import pytorch_lightning as pl


class StepLogInterval(pl.Callback):
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        batches = batches_per_epoch(trainer)
        if batches is not None and 0 < batches < trainer.log_every_n_steps:
            trainer.log_every_n_steps = batches


def batches_per_epoch(trainer: pl.Trainer) -> int | None:
    """The training batches of one epoch on this rank, from the data module's training set (its
    loader is not built here: building it starts the epoch's sampler), after
    `limit_train_batches`; None where the data module cannot say."""
    datamodule = trainer.datamodule
    dataset = getattr(datamodule, "train_set", None)
    batch_size = getattr(datamodule, "batch_size", None)
    if dataset is None or not batch_size:
        return None
    batches = math.ceil(len(dataset) / batch_size / trainer.world_size)
    limit = trainer.limit_train_batches
    if isinstance(limit, int):
        return min(batches, limit)
    return max(1, int(batches * limit)) if limit is not None else batches
