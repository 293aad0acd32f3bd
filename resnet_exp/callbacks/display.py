"""What a run shows while it trains. On a terminal: Rich's live bar and model summary. Anywhere
else (a file, a pipe, a SLURM log): one plain line per epoch, where a live bar's redraws would
become thousands of cut lines, and Lightning's plain-text summary, whose columns are not cut to
80 characters. With `trainer.enable_progress_bar=false` (the usual switch on a cluster) there is
no bar anywhere, and the line per epoch stays: without it a job's log would show nothing between
its config and its summary, for hours."""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import (
    ModelSummary,
    ProgressBar,
    RichModelSummary,
    RichProgressBar,
    TQDMProgressBar,
)


def progress_bar(leave: bool = True, enabled: bool = True,
                 quiet: bool = False) -> pl.Callback | None:
    """`leave`: keep each finished epoch's bar on screen (the terminal's bar). `enabled`: the
    trainer's enable_progress_bar; Lightning refuses any ProgressBar among the callbacks when it
    is false, so the lines then come from a plain callback. `quiet`: nothing per epoch
    (callbacks=lean)."""
    from resnet_exp.core.console import console

    if quiet:  # a bar that draws nothing, in the seat Lightning would give its own bar
        return TQDMProgressBar(refresh_rate=0) if enabled else None
    if not enabled:
        return EpochLines()
    return EpochBar(leave=leave) if console.is_terminal else EpochLinesBar()


def model_summary(max_depth: int = 1) -> ModelSummary:
    """The layers down to `max_depth`, with parameters, FLOPs and in/out sizes."""
    from resnet_exp.core.console import console

    return (RichModelSummary if console.is_terminal else ModelSummary)(max_depth=max_depth)


class EpochBar(RichProgressBar):
    """Rich's bar, counting epochs as people do and as the lines below and the summary do:
    `Epoch 1/15` ... `Epoch 15/15` (Lightning's own reads `Epoch 0/14` ... `Epoch 14/14`)."""

    def _get_train_description(self, current_epoch: int) -> str:
        last = self.trainer.max_epochs
        description = f"Epoch {current_epoch + 1}" + (f"/{last}" if last not in (None, -1) else "")
        return f"{description:{len(self.validation_description)}}"


class EpochLines(pl.Callback):
    """`epoch 3/15  train/loss 0.5120  train/acc 0.8120  val/loss 0.6010  val/acc 0.7900  4.1 s`

    Printed when the epoch is over (its validation and its train numbers logged): at the next
    epoch's start, or at the end of training. The numbers are those a progress bar shows."""

    def __init__(self) -> None:
        super().__init__()
        self._epoch: int | None = None
        self._started = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer)
        self._epoch, self._started = trainer.current_epoch, time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer)

    def _print(self, trainer: pl.Trainer) -> None:
        if self._epoch is None or not trainer.is_global_zero:
            return
        shown = "  ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                          for key, value in trainer.progress_bar_metrics.items())
        last = trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
        total = "" if last == math.inf else f"/{last}"
        seconds = time.perf_counter() - self._started
        print(f"epoch {self._epoch + 1}{total}  {shown}  {seconds:.1f} s", flush=True)
        self._epoch = None


class EpochLinesBar(EpochLines, ProgressBar):
    """The same lines as the run's progress bar: with none among its callbacks, Lightning would
    add its own live bar. Lightning's tuner switches a progress bar off and on."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def _print(self, trainer: pl.Trainer) -> None:
        if self._enabled:
            super()._print(trainer)
