"""The engine tests' own callbacks, named by `_target_` from their command lines (tests/ is on
PYTHONPATH, and sbatch passes the environment on to the jobs): a job that holds still until the
scheduler requeues it, a job that fails at a known epoch. Neither depends on when anything
happens: each acts at a point of training, the test at a file each writes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytorch_lightning as pl

HELD = "held"  # written into the run folder by HoldForRequeue


class HoldForRequeue(pl.Callback):
    """At the start of epoch `epoch` of its first attempt (SLURM_RESTART_COUNT unset or 0), in
    the job whose `seed`/`job` pair matches `only_job`: writes `held` into `run_dir` (its
    last.ckpt then holds the epochs before) and waits for the SIGTERM of `scontrol requeue`, at
    most `bound_s` seconds (a bound for a test that never requeues, not a timing)."""

    def __init__(self, run_dir: str, epoch: int, job: int, only_job: int,
                 bound_s: float = 300) -> None:
        self.run_dir, self.epoch, self.bound_s = Path(run_dir), epoch, bound_s
        self.holds = job == only_job and os.environ.get("SLURM_RESTART_COUNT", "0") == "0"

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.holds or trainer.current_epoch != self.epoch:
            return
        (self.run_dir / HELD).write_text(str(os.getpid()))
        for _ in range(int(self.bound_s / 0.1)):
            if trainer.received_sigterm:  # Lightning's handler; the next batch stops the run
                return
            time.sleep(0.1)


class FailAt(pl.Callback):
    """Raises at the start of epoch `epoch` in the job whose seed is `only_seed`."""

    def __init__(self, epoch: int, seed: int, only_seed: int) -> None:
        self.epoch, self.fails = epoch, seed == only_seed

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fails and trainer.current_epoch == self.epoch:
            raise RuntimeError(f"planted failure at the start of epoch {self.epoch}")
