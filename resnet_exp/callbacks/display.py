"""What a run shows while it trains. On a terminal: Rich's live bar and model summary. Anywhere
else (a file, a pipe, a SLURM log): one plain line per epoch, where a live bar's redraws would
become thousands of cut lines, and Lightning's plain-text summary, whose columns are not cut to
80 characters."""

from __future__ import annotations

import math
import time

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelSummary, ProgressBar, RichModelSummary, RichProgressBar


def progress_bar(leave: bool = True) -> ProgressBar:
    """`leave`: keep each finished epoch's bar on screen (the terminal's bar)."""
    from resnet_exp.console import console

    return RichProgressBar(leave=leave) if console.is_terminal else EpochLines()


def model_summary(max_depth: int = 1) -> ModelSummary:
    """The layers down to `max_depth`, with parameters, FLOPs and in/out sizes."""
    from resnet_exp.console import console

    return (RichModelSummary if console.is_terminal else ModelSummary)(max_depth=max_depth)


class EpochLines(ProgressBar):
    """`epoch 3/15  train/loss 0.5120  train/acc 0.8120  val/loss 0.6010  val/acc 0.7900  4.1 s`

    Printed when the epoch is over (its validation and its train numbers logged): at the next
    epoch's start, or at the end of training."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._epoch: int | None = None
        self._started = 0.0

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer, pl_module)
        self._epoch, self._started = trainer.current_epoch, time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._print(trainer, pl_module)

    def _print(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._epoch is None or not self._enabled or not trainer.is_global_zero:
            return
        metrics = self.get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        shown = "  ".join(f"{key} {value:.4f}" if isinstance(value, float) else f"{key} {value}"
                          for key, value in metrics.items())
        last = trainer.max_epochs if trainer.max_epochs not in (None, -1) else math.inf
        total = "" if last == math.inf else f"/{last}"
        seconds = time.perf_counter() - self._started
        print(f"epoch {self._epoch + 1}{total}  {shown}  {seconds:.1f} s", flush=True)
        self._epoch = None
