"""What every data module shares: class filter and splits, loaders, and on-device preprocessing.

Every module yields `(x, y)` batches with x a uint8 N x C x H x W tensor and y int64, from plain
DataLoaders (so Lightning's distributed sampler and overfit_batches still work). Conversion to
float, normalisation and augmentation happen on the training device in `on_after_batch_transfer`:
a CIFAR-10 batch crosses to the GPU at a quarter of its float32 size, and an in-memory set is
held once, as uint8 (150 MB for CIFAR-10 instead of 600 MB of float32).

Splits: `val_size` images are held out of the training set by a permutation seeded with
`split_seed`, independent of the run seed, so every run of a study validates on the same images.
With val_size=0, validation runs on a separate validation set when there is one (a folder's
val/), else on the test split (only for recipes that select nothing on it).
"""

from __future__ import annotations

import math
import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset

from resnet_exp.core.errors import UserError
from resnet_exp.data.augment import Augmentation
from resnet_exp.data.order import (
    DeviceBatches,
    EpochPosition,
    EpochShuffle,
    IndexedTensors,
    collate_fn,
)


def split_rows(labels: torch.Tensor, names: list[str], pool: torch.Tensor, test: torch.Tensor,
               val: torch.Tensor | None, *, keep: list[str] | None, num_classes: int,
               val_size: int, split_seed: int, max_per_class: int | None, title: str):
    """Class filter, validation split and per-class cap over row indices into `labels` (pool:
    training rows; test: test rows; val: rows of a separate validation set, or None). Returns
    the relabelled labels, the class names kept and the train, val and test rows."""
    if keep is not None:
        unknown = [c for c in keep if c not in names]
        if unknown:
            raise UserError(f"data.classes={keep} names {unknown}, which {title} "
                            f"does not have; its classes are {names}")
        lut = torch.full((len(names),), -1, dtype=torch.long)
        lut[[names.index(c) for c in keep]] = torch.arange(len(keep))
        labels, names = lut[labels], list(keep)
        pool, test = pool[labels[pool] >= 0], test[labels[test] >= 0]
        val = None if val is None else val[labels[val] >= 0]
    if len(names) != num_classes:
        found = (f"data.classes keeps {len(names)}" if keep is not None
                 else f"{title} has {len(names)} classes")
        raise UserError(f"data.num_classes={num_classes} but {found}: "
                        f"set data.num_classes={len(names)}")
    if val_size >= len(pool):
        raise UserError(f"data.val_size={val_size} but {title} has only {len(pool)} "
                        "training images to hold it out of: set a smaller data.val_size")
    order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(split_seed))
    train = pool[order[val_size :]].sort().values
    if val_size > 0:
        val = pool[order[: val_size]].sort().values
    elif val is None:
        val = test
    if max_per_class is not None:
        train = torch.cat([train[labels[train] == c][: max_per_class]
                           for c in range(len(names))]).sort().values
    return labels.long(), names, train, val, test


class DataModule(pl.LightningDataModule):
    """Subclasses set `self.train_set`, `self.val_set`, `self.test_set` and `self.classes` in
    setup(), with `self.split` choosing the rows of each split."""

    title = "dataset"
    workers = 0  # DataLoader processes: folder sets decode in them, in-memory sets need none

    def __init__(self, num_classes: int, in_channels: int, image_size: int, mean: list[float],
                 std: list[float], normalize: bool = True, batch_size: int = 128,
                 eval_batch_size: int | None = None, val_size: int = 0, split_seed: int = 0,
                 augmentation: Augmentation | None = None, seed: int = 0,
                 classes: list[str] | None = None, max_per_class: int | None = None,
                 on_device: bool = False) -> None:
        super().__init__()
        if len(mean) not in (1, in_channels) or len(std) != len(mean):
            raise UserError(
                f"data.mean has {len(mean)} values and data.std {len(std)}, but the images have "
                f"data.in_channels={in_channels}: give one value per channel (or one for all)"
            )
        if batch_size < 1 or (eval_batch_size is not None and eval_batch_size < 1):
            raise UserError(f"data.batch_size={batch_size} and data.eval_batch_size="
                            f"{eval_batch_size}: a batch needs at least 1 image")
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size
        self.mean, self.std, self.normalize = list(mean), list(std), normalize
        self.batch_size = batch_size
        # evaluation keeps no graph, so twice the batch fits in the same memory
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.val_size, self.split_seed = val_size, split_seed
        self.augmentation, self.seed = augmentation, seed
        self.keep = None if classes is None else [str(c) for c in classes]
        self.max_per_class, self.on_device = max_per_class, on_device
        self.classes: list[str] = []
        self.train_set = self.val_set = self.test_set = None
        self.position = EpochPosition(seed)
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def split(self, labels: torch.Tensor, names: list[str], pool: torch.Tensor,
              test: torch.Tensor, val: torch.Tensor | None = None):
        """`split_rows` with this module's settings; sets `classes`. Returns the relabelled
        labels and the train, val and test rows."""
        labels, self.classes, *rows = split_rows(
            labels, names, pool, test, val, keep=self.keep, num_classes=self.num_classes,
            val_size=self.val_size, split_seed=self.split_seed, max_per_class=self.max_per_class,
            title=self.title)
        return labels, *rows

    def check_size(self, channels: int, height: int, width: int) -> None:
        if (channels, height, width) != (self.in_channels, self.image_size, self.image_size):
            raise UserError(
                f"data.in_channels={self.in_channels} and data.image_size={self.image_size}, "
                f"but {self.title} images are {channels}x{height}x{width}: set "
                f"data.in_channels={channels} data.image_size={height}"
            )

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        in_memory = isinstance(dataset, IndexedTensors)
        workers = 0 if in_memory else self.workers
        batch_size = self.batch_size if train else self.eval_batch_size
        sampler = None
        if train:
            # Worker processes draw their first batches when the loader is iterated, before
            # Lightning calls set_epoch: start at the epoch the (possibly resumed) trainer is at.
            trainer = self.trainer
            epoch = trainer.fit_loop.epoch_progress.current.processed if trainer else 0
            single = trainer is None or trainer.world_size == 1
            start = self.position.start(epoch, math.ceil(len(dataset) / batch_size),
                                        resumable=single)
            if start:  # Lightning warns that the loader has no state of its own: it needs none
                warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended "
                                        "before", PossibleUserWarning)
            sampler = EpochShuffle(len(dataset), self.seed, epoch, skip=start * batch_size)
        device = self._move_to_device() if in_memory else None
        if device is not None:
            return DataLoader(dataset, batch_size=None, collate_fn=collate_fn,
                              sampler=DeviceBatches(sampler, len(dataset), batch_size, device))
        return DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, drop_last=False,
            # seeds worker processes; without it DataLoader draws their seed from the global RNG
            generator=torch.Generator().manual_seed(self.seed) if train else None,
            collate_fn=collate_fn if in_memory else None, num_workers=workers,
            pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _move_to_device(self) -> torch.device | None:
        """With `on_device` and an accelerator: moves the in-memory splits to the training device
        once (CIFAR-10: 184 MB of uint8; the image tensor the splits share moves once and leaves
        the host) and returns it. None: they stay on the host."""
        trainer = self.trainer
        if not self.on_device or trainer is None or trainer.strategy.root_device.type == "cpu":
            return None
        device = trainer.strategy.root_device
        moved: dict[int, torch.Tensor] = {}  # by id: the originals stay alive until replaced
        for split in (self.train_set, self.val_set, self.test_set):
            if isinstance(split, IndexedTensors) and split.x.device != device:
                for name in ("x", "y", "index"):
                    tensor = getattr(split, name)
                    moved.setdefault(id(tensor), tensor.to(device))
                    setattr(split, name, moved[id(tensor)])
        return device

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def state_dict(self) -> dict[str, int]:
        # Lightning saves it in every checkpoint, restores it before the loaders are made
        return self.position.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.position.load_state_dict(state)

    def prepare_batch(self, x: torch.Tensor, y: torch.Tensor, train: bool = False,
                      generator: torch.Generator | None = None):
        """uint8 batch -> float batch in [0, 1], normalised, augmented when `train`: drawn from
        `generator`, by default the run's next training batch's (EpochPosition)."""
        augment = self.augmentation if train else None
        if train and generator is None:
            trainer = self.trainer
            epoch = trainer.current_epoch if trainer is not None else 0
            batch = self.position.advance(epoch)
            if augment is not None:
                rank = trainer.global_rank if trainer is not None else 0
                generator = self.position.generator(x.device, epoch, batch, rank)
        if augment is not None:
            x = augment.before_normalize(x, generator)
        x = x.float().div_(255)
        if self.normalize:
            key = str(x.device)
            if key not in self._stats:
                self._stats[key] = tuple(torch.tensor(v, device=x.device)[:, None, None]
                                         for v in (self.mean, self.std))
            mean, std = self._stats[key]
            x = x.sub_(mean).div_(std)
        if augment is not None:
            x = augment.after_normalize(x, generator)
            x, y = augment.mix(x, y, self.num_classes, generator)
        return x, y

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, torch.Tensor):  # the model summary's example image: no batch
            return batch
        x, y = batch
        return self.prepare_batch(x, y, train=self.trainer is not None and self.trainer.training)
