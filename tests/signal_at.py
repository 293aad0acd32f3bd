"""A test's own callback: the run sends itself a signal at a known training batch, so that a
test of interruption never depends on when a signal sent from outside happens to arrive.

    +callbacks.signal_at._target_=signal_at.SignalAt +callbacks.signal_at.signal=SIGTERM
    +callbacks.signal_at.epoch=1 +callbacks.signal_at.batch=3

(the test puts tests/ on PYTHONPATH; a resume replays it only with --trust, being no code of
the framework's). epoch=-1 never fires.
"""

from __future__ import annotations

import os
import signal as signals

import pytorch_lightning as pl


def overrides(signal: str, epoch: int, batch: int, add: bool = True) -> list[str]:
    plus = "+" if add else ""
    return [f"{plus}callbacks.signal_at._target_=signal_at.SignalAt",
            f"{plus}callbacks.signal_at.signal={signal}",
            f"{plus}callbacks.signal_at.epoch={epoch}", f"{plus}callbacks.signal_at.batch={batch}"]


class SignalAt(pl.Callback):
    """Sends `signal` to this process when training batch `batch` of epoch `epoch` starts."""

    def __init__(self, signal: str, epoch: int, batch: int) -> None:
        self.signal, self.epoch, self.batch = getattr(signals, signal), epoch, batch

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getpid(), self.signal)


class SignalParentAt(pl.Callback):
    """Sends `signal` to the process that started this one (a sweep's, for a job that a
    launcher runs in a worker process) when training batch `batch` of epoch `epoch` starts, in
    the job whose seed is `only_seed` (`seed` is the job's own: `${seed}`)."""

    def __init__(self, signal: str, epoch: int, batch: int, seed: int, only_seed: int) -> None:
        self.signal, self.epoch, self.batch = getattr(signals, signal), epoch, batch
        self.sends = seed == only_seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.sends and (trainer.current_epoch, batch_idx) == (self.epoch, self.batch):
            os.kill(os.getppid(), self.signal)
