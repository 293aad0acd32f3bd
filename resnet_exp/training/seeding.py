"""Seeds drawn from (seed, epoch, place in the epoch), so that an interrupted epoch replays exactly.

A run resumed from a checkpoint ends with the same weights, metrics and TensorBoard curves as
the same run uninterrupted (tests/test_resume.py). Each random stream has its own piece:

- the shuffle: `data.order.EpochShuffle`, a permutation drawn from (seed, epoch);
- the augmentation: `data.order.EpochPosition`, a generator per batch seeded from (seed, epoch,
  rank) and the batch's index; the data module saves the position in every checkpoint, and a
  fit resumed mid-epoch skips the batches already done (`DataModule._loader`);
- dropout and anything else drawing from the global generators: `EpochSeed` below reseeds them
  each epoch and carries their states in a checkpoint written mid-epoch;
- the epoch's partial sums: the module's train loss and accuracy (`module.Classifier`,
  `on_save_checkpoint`) and the gradient-flow sums (`callbacks.GradientFlow.state_dict`);
- the resume points: last.ckpt at every epoch end and, on SIGTERM, after the batch in progress
  (`callbacks.ModelCheckpoint.on_exception`); the run folder is prepared by `runs.resume`.

SIGINT and SIGKILL can land inside a step: their resume point is the last epoch end.
"""

from __future__ import annotations

import functools
import random

import numpy as np
import pytorch_lightning as pl
import torch


@functools.lru_cache(maxsize=64)  # asked once per training batch; SeedSequence costs ~15 us
def epoch_seed(seed: int, epoch: int, *stream: int) -> int:
    """A seed for one epoch of one random stream, mixed by NumPy's SeedSequence: `seed + epoch`
    would give seed 1's second epoch the shuffle of seed 2's first, correlating a seed study."""
    return int(np.random.SeedSequence([seed % 2**63, epoch, *stream]).generate_state(1)[0])


class EpochSeed(pl.Callback):
    """Reseeds Python, NumPy and torch from (seed, epoch) before each epoch's first batch, so
    dropout and anything else drawing from the global generators replays an epoch exactly after a
    resume. A checkpoint written mid-epoch (on SIGTERM) carries the generators' states, put back
    before the resumed epoch's next batch. One process's: under DDP rank 0's are saved."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._resumed: dict | None = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        resumed, self._resumed = self._resumed, None
        if batch_idx == 0:
            seed = epoch_seed(self.seed, trainer.current_epoch, 2)
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.manual_seed(seed)  # every device's generator
        elif resumed is not None and trainer.world_size == 1:  # the states are rank 0's
            set_rng_states(resumed)

    def state_dict(self) -> dict:
        return rng_states()

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed = state_dict or None


def rng_states() -> dict:
    """The global generators' states as tensors and plain values (torch.load(weights_only=True)
    reads them back; a NumPy array it would refuse)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"python": random.getstate(), "torch": torch.get_rng_state(),
              "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
