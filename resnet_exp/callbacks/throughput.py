"""Callbacks that record what Lightning's own do not."""

from __future__ import annotations

import time

import pytorch_lightning as pl


class EpochThroughput(pl.Callback):
    """Logs `time/epoch_s` (training and validation) and `time/images_per_s` (training steps,
    data loading included) of each epoch.

    Counts images from batch shapes (host-side metadata: no device sync) and reads a clock per
    batch only, so it costs nothing measurable per step.
    """

    def __init__(self) -> None:
        self._start = self._last_batch_end = 0.0
        self._images = 0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._images = 0
        self._start = self._last_batch_end = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._images += len(batch[0])
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        train_seconds = max(self._last_batch_end - self._start, 1e-9)
        # Under DDP: the slowest rank's epoch, and the images of all ranks (one all-reduce per
        # epoch; nothing in a single process).
        pl_module.log("time/epoch_s", time.perf_counter() - self._start, on_epoch=True,
                      sync_dist=True, reduce_fx="max")
        pl_module.log("time/images_per_s", self._images / train_seconds, on_epoch=True,
                      sync_dist=True, reduce_fx="sum")
