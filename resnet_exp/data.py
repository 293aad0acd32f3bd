"""Data modules for sets that fit in memory: digits, CIFAR-10/100, Fashion-MNIST, synthetic.

Every module yields `(x, y)` batches with x a uint8 N x C x H x W tensor and y int64, from plain
DataLoaders (so Lightning's distributed sampler and overfit_batches still work). Conversion to
float, normalisation and augmentation happen on the training device in `on_after_batch_transfer`:
a CIFAR-10 batch crosses to the GPU at a quarter of its float32 size, and the whole set is held
once, as uint8 (150 MB for CIFAR-10 instead of 600 MB of float32). Folder sets are in folders.py.

Splits: `val_size` images are held out of the training set by a permutation seeded with
`split_seed`, independent of the run seed, so every run of a study validates on the same images.
With val_size=0, validation runs on the test split (only for recipes that select nothing on it).
"""

from __future__ import annotations

import functools
import gzip
import shutil
import warnings
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytorch_lightning as pl
import torch
import torchvision.datasets as tvd
from pytorch_lightning.utilities.warnings import PossibleUserWarning
from torch.utils.data import DataLoader, Dataset, Sampler

from resnet_exp.augment import Augmentation
from resnet_exp.errors import UserError


class TensorDataset(Dataset):
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
    """`TensorDataset.__getitems__` already returns the batch; module-level so it pickles."""
    return batch


@functools.lru_cache(maxsize=64)  # asked once per training batch; SeedSequence costs ~15 us
def epoch_seed(seed: int, epoch: int, *stream: int) -> int:
    """A seed for one epoch of one random stream, mixed by NumPy's SeedSequence: `seed + epoch`
    would give seed 1's second epoch the shuffle of seed 2's first, correlating a seed study."""
    return int(np.random.SeedSequence([seed % 2**63, epoch, *stream]).generate_state(1)[0])


class EpochShuffle(Sampler[int]):
    """A permutation per epoch drawn from (seed, epoch) alone, as DistributedSampler does: epoch
    e sees the same order whether the run got there straight or resumed from a checkpoint, so an
    interrupted epoch replays exactly. Lightning calls `set_epoch` before each epoch.

    `resume_at(epoch, skip)`: epoch `epoch` starts at position `skip` of its order (a run resumed
    from a checkpoint written mid-epoch, on SIGTERM); its length stays the whole epoch's, which
    Lightning's loop counts on."""

    def __init__(self, size: int, seed: int, epoch: int = 0) -> None:
        self.size, self.seed, self.epoch = size, seed, epoch
        self._resume = (-1, 0)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, skip: int) -> None:
        self._resume = (epoch, skip)

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, 0))
        order = torch.randperm(self.size, generator=generator)
        resume_epoch, skip = self._resume
        return iter(order[skip if self.epoch == resume_epoch else 0 :].tolist())


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
        return -(-self.size // self.batch_size)

    def __iter__(self):
        order = torch.arange(self.size) if self.order is None else torch.tensor(list(self.order))
        return iter(order.to(self.device).split(self.batch_size))


class DataModule(pl.LightningDataModule):
    """What every data module shares: class filter, splits, loaders and on-device preprocessing.

    Subclasses set `self.train_set`, `self.val_set`, `self.test_set` and `self.classes` in setup().
    """

    title = "dataset"
    workers = 0  # DataLoader processes: folder sets decode in them, in-memory sets need none

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        image_size: int,
        mean: list[float],
        std: list[float],
        normalize: bool = True,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        val_size: int = 0,
        split_seed: int = 0,
        augmentation: Augmentation | None = None,
        seed: int = 0,
        classes: list[str] | None = None,
        max_per_class: int | None = None,
        on_device: bool = False,
    ) -> None:
        super().__init__()
        if len(mean) not in (1, in_channels) or len(std) != len(mean):
            raise UserError(
                f"data.mean has {len(mean)} values and data.std {len(std)}, but the images have "
                f"data.in_channels={in_channels}: give one value per channel (or one for all)"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.image_size = image_size
        self.mean = list(mean)
        self.std = list(std)
        self.normalize = normalize
        self.batch_size = batch_size
        # evaluation keeps no graph, so twice the batch fits in the same memory
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.val_size = val_size
        self.split_seed = split_seed
        self.augmentation = augmentation
        self.seed = seed
        self.keep = None if classes is None else [str(c) for c in classes]
        self.max_per_class = max_per_class
        self.on_device = on_device
        self.classes: list[str] = []
        self.train_set = self.val_set = self.test_set = None
        self._generators: dict[str, torch.Generator] = {}
        # (epoch, training batches prepared in it): the next batch's place in its epoch, which
        # seeds its augmentation; a checkpoint carries it (state_dict), so a resumed run knows
        # where in the epoch it is
        self._position = (0, 0)
        self._resumed: tuple[int, int] | None = None
        self._stats: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- splits ---------------------------------------------------------------------------------

    def _select(
        self,
        labels: torch.Tensor,
        names: list[str],
        pool: torch.Tensor,
        test: torch.Tensor,
        val: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class filter, validation split and per-class cap over row indices into `labels`.

        pool: rows of the training set; test: rows of the test set; val: rows of a separate
        validation set (a folder's val/), used when val_size=0. Returns the relabelled labels and
        the train, val and test rows.
        """
        if self.keep is not None:
            unknown = [c for c in self.keep if c not in names]
            if unknown:
                raise UserError(
                    f"data.classes={self.keep} names {unknown}, which {self.title} does not have; "
                    f"its classes are {names}"
                )
            lut = torch.full((len(names),), -1, dtype=torch.long)
            lut[[names.index(c) for c in self.keep]] = torch.arange(len(self.keep))
            labels, names = lut[labels], list(self.keep)
            pool, test = pool[labels[pool] >= 0], test[labels[test] >= 0]
            val = None if val is None else val[labels[val] >= 0]
        if len(names) != self.num_classes:
            found = (
                f"data.classes keeps {len(names)}" if self.keep is not None
                else f"{self.title} has {len(names)} classes"
            )
            raise UserError(
                f"data.num_classes={self.num_classes} but {found}: "
                f"set data.num_classes={len(names)}"
            )
        self.classes = names
        if self.val_size >= len(pool):
            raise UserError(
                f"data.val_size={self.val_size} but {self.title} has only {len(pool)} training "
                f"images to hold it out of: set a smaller data.val_size"
            )
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(self.split_seed))
        train = pool[order[self.val_size :]].sort().values
        if self.val_size > 0:
            val = pool[order[: self.val_size]].sort().values
        elif val is None:
            val = test
        if self.max_per_class is not None:
            train = torch.cat([train[labels[train] == c][: self.max_per_class]
                               for c in range(len(names))]).sort().values
        return labels.long(), train, val, test

    def _check_size(self, channels: int, height: int, width: int) -> None:
        if (channels, height, width) != (self.in_channels, self.image_size, self.image_size):
            raise UserError(
                f"data.in_channels={self.in_channels} and data.image_size={self.image_size}, "
                f"but {self.title} images are {channels}x{height}x{width}: set "
                f"data.in_channels={channels} data.image_size={height}"
            )

    # -- loaders --------------------------------------------------------------------------------

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        in_memory = isinstance(dataset, TensorDataset)
        workers = 0 if in_memory else self.workers
        sampler = None
        if train:
            # Worker processes draw their first batches when the loader is iterated, before
            # Lightning calls set_epoch: start at the epoch the (possibly resumed) trainer is at.
            trainer = self.trainer
            epoch = trainer.fit_loop.epoch_progress.current.processed if trainer is not None else 0
            sampler = EpochShuffle(len(dataset), self.seed, epoch)
            self._position = (epoch, self._resume_batch(epoch, len(dataset)))
            sampler.resume_at(epoch, self._position[1] * self.batch_size)
        device = self._held_on() if in_memory else None
        if device is not None:
            batch_size = self.batch_size if train else self.eval_batch_size
            return DataLoader(dataset, batch_size=None, collate_fn=collate_fn,
                              sampler=DeviceBatches(sampler, len(dataset), batch_size, device))
        return DataLoader(
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            sampler=sampler,
            drop_last=False,
            # seeds worker processes; without it DataLoader draws their seed from the global RNG
            generator=torch.Generator().manual_seed(self.seed) if train else None,
            collate_fn=collate_fn if in_memory else None,
            num_workers=workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _held_on(self) -> torch.device | None:
        """With `on_device` and an accelerator: the device that the in-memory splits now live on,
        moved there once (CIFAR-10: 184 MB of uint8; the image tensor the splits share moves
        once and leaves the host). None: they stay on the host."""
        trainer = self.trainer
        if not self.on_device or trainer is None or trainer.strategy.root_device.type == "cpu":
            return None
        device = trainer.strategy.root_device
        moved: dict[int, torch.Tensor] = {}  # by id: the originals stay alive until replaced
        for split in (self.train_set, self.val_set, self.test_set):
            if isinstance(split, TensorDataset) and split.x.device != device:
                for name in ("x", "y", "index"):
                    tensor = getattr(split, name)
                    if id(tensor) not in moved:
                        moved[id(tensor)] = tensor.to(device)
                    setattr(split, name, moved[id(tensor)])
        return device

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    # -- on-device preprocessing ----------------------------------------------------------------

    def _resume_batch(self, epoch: int, size: int) -> int:
        """The batch a (re)started fit begins `epoch` at: 0, or where a checkpoint written
        mid-epoch left it. One process only: under DDP Lightning re-shards the sampler's whole
        order, so a mid-epoch resume there starts the epoch's order again (Lightning warns)."""
        resumed, self._resumed = self._resumed, None
        if resumed is None or resumed[0] != epoch or self.trainer is None:
            return 0
        if self.trainer.world_size > 1 or not 0 < resumed[1] < -(-size // self.batch_size):
            return 0
        # Lightning asks loaders for state_dict/load_state_dict to resume mid-epoch and warns
        # that this one has none; the position travels in this module's state instead
        warnings.filterwarnings("ignore", "You're resuming from a checkpoint that ended before",
                                PossibleUserWarning)
        return resumed[1]

    def state_dict(self) -> dict[str, int]:
        # Lightning saves it in every checkpoint, restores it before the loaders are made
        return {"epoch": self._position[0], "batch": self._position[1]}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resumed = (int(state["epoch"]), int(state["batch"]))

    def _next_batch(self) -> tuple[int, int]:
        """(epoch, place in the epoch) of the training batch being prepared."""
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        batch = self._position[1] if self._position[0] == epoch else 0
        self._position = (epoch, batch + 1)
        return epoch, batch

    def _generator(self, device: torch.device, epoch: int, batch: int) -> torch.Generator:
        """The generator of one training batch's augmentation, seeded from (seed, epoch, rank)
        and the batch's place in the epoch: a resumed run draws what the uninterrupted one drew,
        from an epoch's start or from the middle of one. Each DDP rank draws its own."""
        rank = self.trainer.global_rank if self.trainer is not None else 0
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device)
        # consecutive seeds, as DataLoader seeds its workers: torch's generators scramble them
        seed = (epoch_seed(self.seed, epoch, 1, rank) + batch) % 2**63
        return self._generators[key].manual_seed(seed)

    def prepare_batch(
        self, x: torch.Tensor, y: torch.Tensor, train: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 batch -> float batch in [0, 1], normalised, augmented when `train`."""
        augment = self.augmentation if train else None
        place = self._next_batch() if train else None
        if augment is not None:
            generator = self._generator(x.device, *place)
            x = augment.before_normalize(x, generator)
        x = x.float().div_(255)
        if self.normalize:
            key = str(x.device)
            if key not in self._stats:
                mean, std = (torch.tensor(v, device=x.device)[:, None, None]
                             for v in (self.mean, self.std))
                self._stats[key] = mean, std
            mean, std = self._stats[key]
            x = x.sub_(mean).div_(std)
        if augment is not None:
            x = augment.after_normalize(x, generator)
        return x, y

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        training = self.trainer is not None and self.trainer.training
        return self.prepare_batch(x, y, train=training)


class InMemory(DataModule):
    """A set held as one uint8 tensor; subclasses implement `_load`."""

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
        """All images (N x C x H x W uint8), labels, class names, and the number of training
        images, which come first."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        if self.augmentation is not None and self.augmentation.random_resized_crop:
            raise UserError(
                f"augmentation.random_resized_crop is set, which only folder datasets support, "
                f"but the data is {self.title}: use augmentation=standard (or none, cutout)"
            )
        x, labels, names, num_train = self._load()
        self._check_size(*x.shape[1:])
        rows = torch.arange(len(x))
        labels, train, val, test = self._select(labels, names, rows[:num_train], rows[num_train:])
        self.train_set, self.val_set, self.test_set = (
            TensorDataset(x, labels, index) for index in (train, val, test)
        )


class Digits(InMemory):
    """scikit-learn's 1,797 handwritten 8x8 digits (UCI optdigits test part), 10 classes.

    A fixed `test_size` of them, then `val_size`, are held out by permutations seeded with
    `split_seed`; the other arguments are DataModule's.
    """

    title = "digits"

    def __init__(self, test_size: int = 360, val_size: int = 180, **kwargs) -> None:
        super().__init__(val_size=val_size, **kwargs)
        self.test_size = test_size

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        # pixel values are counts 0..16 of set bits in 4x4 blocks (Alpaydin & Kaynak 1998)
        x = torch.from_numpy(digits.images).mul(255 / 16).round().to(torch.uint8)[:, None]
        y = torch.from_numpy(digits.target).long()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        order = torch.cat([order[self.test_size :], order[: self.test_size]])  # test rows last
        names = [str(int(n)) for n in digits.target_names]
        return x[order].contiguous(), y[order], names, len(x) - self.test_size


class Synthetic(InMemory):
    """Random images with a learnable signal, for smoke and speed runs without any files.

    Each class has a fixed random template; an image is its class's template plus Gaussian noise
    of std `noise` (pixel units). Data depend only on `split_seed`, not on the run seed.
    """

    title = "synthetic"

    def __init__(
        self,
        num_train: int = 1000,
        num_val: int = 200,
        num_test: int = 200,
        noise: float = 64.0,
        **kwargs,
    ) -> None:
        super().__init__(val_size=num_val, **kwargs)
        self.num_train, self.num_val, self.num_test = num_train, num_val, num_test
        self.noise = noise

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
        gen = torch.Generator().manual_seed(self.split_seed)
        shape = (self.in_channels, self.image_size, self.image_size)
        templates = torch.randint(0, 256, (self.num_classes, *shape), generator=gen).float()
        n = self.num_train + self.num_val + self.num_test
        y = (torch.arange(n) % self.num_classes)[torch.randperm(n, generator=gen)]
        x = torch.empty((n, *shape), dtype=torch.uint8)
        for start in range(0, n, 4096):  # chunks: never a float copy of the whole set
            part = y[start : start + 4096]
            noise = torch.randn((len(part), *shape), generator=gen) * self.noise
            x[start : start + 4096] = (templates[part] + noise).clamp_(0, 255).round_().byte()
        names = [f"class_{i}" for i in range(self.num_classes)]
        return x, y, names, self.num_train + self.num_val


class TorchvisionSet(InMemory):
    """A torchvision dataset class read whole into memory; subclasses name the class and files."""

    source = tvd.VisionDataset
    folder = ""  # where the files live, relative to root
    files: tuple[str, ...] = ()
    hint = ""

    def __init__(self, root: str, download: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.download = download

    def _missing(self) -> list[str]:
        return [f for f in self.files if not (Path(self.root) / self.folder / f).exists()]

    def prepare_data(self) -> None:
        if not self.download or not self._missing():
            return
        try:
            self.source(self.root, train=False, download=True)
        except (URLError, OSError, RuntimeError) as e:
            raise UserError(
                f"could not download {self.title} into {Path(self.root) / self.folder} ({e}). "
                f"Without internet, copy the files there or set "
                f"data.root=/path/that/holds/{self.folder}{self.hint}"
            ) from None

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
        if self._missing() and self.download:
            self.prepare_data()  # used without a Trainer, which calls it first
        missing = self._missing()
        if missing:
            raise UserError(
                f"{self.title} not found: looked in {(Path(self.root) / self.folder).resolve()} "
                f"and {', '.join(missing)} is missing. Set data.download=true to download it "
                f"(needs internet), or data.root=/path/that/holds/{self.folder} "
                f"(the default root is $RESNET_EXP_DATA, else ./data){self.hint}"
            )
        try:
            train, test = (self.source(self.root, train=t) for t in (True, False))
        except RuntimeError as e:
            raise UserError(
                f"{self.title} in {Path(self.root) / self.folder} fails torchvision's check ({e}): "
                f"delete that folder and run again with data.download=true"
            ) from None
        x = torch.cat([torch.as_tensor(train.data), torch.as_tensor(test.data)])
        # CIFAR keeps N x H x W x C arrays, MNIST-style sets N x H x W tensors
        x = x[:, None] if x.ndim == 3 else x.permute(0, 3, 1, 2)
        y = torch.cat([torch.as_tensor(train.targets), torch.as_tensor(test.targets)]).long()
        return x.contiguous(), y, list(train.classes), len(train.data)


class CIFAR10(TorchvisionSet):
    """CIFAR-10 (Krizhevsky 2009): 50,000 training and 10,000 test 32x32 colour images."""

    title = "CIFAR-10"
    source = tvd.CIFAR10
    folder = "cifar-10-batches-py"
    files = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")


class CIFAR100(TorchvisionSet):
    """CIFAR-100 (Krizhevsky 2009) with its 100 fine labels."""

    title = "CIFAR-100"
    source = tvd.CIFAR100
    folder = "cifar-100-python"
    files = ("train", "test", "meta")


class FashionMNIST(TorchvisionSet):
    """Fashion-MNIST (Xiao et al. 2017): 60,000 training and 10,000 test 28x28 grey images."""

    title = "Fashion-MNIST"
    source = tvd.FashionMNIST
    folder = "FashionMNIST/raw"
    files = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    hint = (
        "; Debian's dataset-fashion-mnist package holds the gzipped files in "
        "/usr/share/datasets/fashion-mnist: copy them into <root>/FashionMNIST/raw/"
    )

    def _missing(self) -> list[str]:
        # gzipped files as distributed (and as Debian installs them) are unpacked in place, as
        # torchvision's own download does
        raw = Path(self.root) / self.folder
        for name in self.files:
            packed = raw / f"{name}.gz"
            if not (raw / name).exists() and packed.exists():
                with gzip.open(packed, "rb") as src, open(raw / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
        return super()._missing()

