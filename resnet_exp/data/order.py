"""The order in which training sees the data, and where in that order it is.

`EpochShuffle` draws each epoch's permutation from (seed, epoch) alone; `EpochPosition` knows the
next training batch's place in its epoch, which seeds that batch's augmentation and which a
checkpoint carries, so an interrupted epoch replays exactly (training/seeding.py tells the
whole story). `IndexedTensors` and `DeviceBatches` serve sets held in memory a batch at a time.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Dataset, Sampler

from resnet_exp.training.seeding import epoch_seed


class IndexedTensors(Dataset):
    """Rows `index` of an image tensor that all splits share, fetched a whole batch at a time."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor) -> None:
        self.x, self.y, self.index = x, y, index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.index[i]
        return self.x[row], self.y[row]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        # DataLoader's fetcher hands over the batch's indices here: one gather, no per-image Python
        rows = self.index[torch.as_tensor(indices, dtype=torch.long)]
        return self.x[rows], self.y[rows]


def collate_fn(batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """`IndexedTensors.__getitems__` already returns the batch; module-level so it pickles."""
    return batch


class EpochShuffle(Sampler[int]):
    """A permutation per epoch drawn from (seed, epoch) alone, as DistributedSampler does: epoch
    e sees the same order whether the run got there straight or resumed from a checkpoint.
    Lightning calls `set_epoch` before each epoch.

    `skip`: the first epoch starts at that position of its order (a run resumed from a checkpoint
    written mid-epoch); its length stays the whole epoch's, which Lightning's loop counts on."""

    def __init__(self, size: int, seed: int, epoch: int = 0, skip: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch
        self._skip = (epoch, skip)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, 0))
        order = torch.randperm(self.size, generator=generator)
        skip_epoch, skip = self._skip
        return iter(order[skip if self.epoch == skip_epoch else 0 :].tolist())


class DeviceBatches(Sampler[torch.Tensor]):
    """Whole batches of positions as tensors on the device that holds an in-memory set
    (`data.on_device`): the epoch's order crosses to the device once, instead of a list of ints
    per batch, and the gather runs there. The order is `order`'s (EpochShuffle: the same batches
    as from the host) or, without one, the set's own."""

    def __init__(self, order: EpochShuffle | None, size: int, batch_size: int,
                 device: torch.device) -> None:
        self.order, self.size, self.batch_size, self.device = order, size, batch_size, device

    def set_epoch(self, epoch: int) -> None:
        if self.order is not None:
            self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_size)

    def __iter__(self):
        order = torch.arange(self.size) if self.order is None else torch.tensor(list(self.order))
        return iter(order.to(self.device).split(self.batch_size))


class EpochPosition:
    """The next training batch's place: (epoch, batch index in the epoch).

    It seeds each batch's augmentation generator from (seed, epoch, rank) and the batch's index,
    so a resumed run draws what the uninterrupted one drew, from an epoch's start or from its
    middle; a checkpoint saves it (`state_dict`), and a resumed fit starts its epoch there.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = self.batch = 0
        self._resumed: tuple[int, int] | None = None  # from a checkpoint, until the epoch starts
        self._generators: dict[str, torch.Generator] = {}  # one per device, reseeded per batch

    def start(self, epoch: int, batches: int, resumable: bool = True) -> int:
        """Training begins `epoch` of `batches` batches (its loader is made); returns the batch it
        starts at: 0, or where a checkpoint written in this epoch left it. Not `resumable` (DDP:
        Lightning re-shards the sampler's whole order), the epoch starts again."""
        resumed, self._resumed = self._resumed, None
        self.epoch, self.batch = epoch, 0
        if resumable and resumed is not None and resumed[0] == epoch and 0 < resumed[1] < batches:
            self.batch = resumed[1]
        return self.batch

    def advance(self, epoch: int) -> int:
        """The index in `epoch` of the training batch being prepared; the position moves past it."""
        batch = self.batch if self.epoch == epoch else 0
        self.epoch, self.batch = epoch, batch + 1
        return batch

    def generator(self, device: torch.device, epoch: int, batch: int,
                  rank: int = 0) -> torch.Generator:
        """The generator of one training batch's augmentation; each DDP rank draws its own."""
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device)
        # consecutive seeds, as DataLoader seeds its workers: torch's generators scramble them
        seed = (epoch_seed(self.seed, epoch, 1, rank) + batch) % 2**63
        return self._generators[key].manual_seed(seed)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resumed = (int(state["epoch"]), int(state["batch"]))
