"""Data modules for sets that fit in memory: digits, CIFAR-10/100, Fashion-MNIST, synthetic.

Each loads its whole set once as one uint8 N x C x H x W tensor; the splits are rows of it
(`IndexedTensors`). Folder sets are in folders.py.
"""

from __future__ import annotations

import gzip
import shutil
import socket
import sys
from pathlib import Path
from urllib.error import URLError

import torch
import torchvision.datasets as tvd

from resnet_exp.core.errors import UserError
from resnet_exp.data.module import DataModule
from resnet_exp.data.order import IndexedTensors

DOWNLOAD_TIMEOUT_S = 60.0  # seconds without a byte before a download gives up


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
        self.check_size(*x.shape[1:])
        rows = torch.arange(len(x))
        labels, train, val, test = self.split(labels, names, rows[:num_train], rows[num_train:])
        self.train_set, self.val_set, self.test_set = (
            IndexedTensors(x, labels, index) for index in (train, val, test)
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

    def _unpack(self) -> None:
        """Files distributed compressed are unpacked where torchvision reads them."""

    def prepare_data(self) -> None:
        self._unpack()
        if not self.download or not self._missing():
            return
        url = getattr(self.source, "url", None) or next(iter(getattr(self.source, "mirrors", [])),
                                                        "torchvision's mirrors")
        print(f"downloading {self.title} from {url} into {Path(self.root) / self.folder}",
              file=sys.stderr)
        previous = socket.getdefaulttimeout()
        # urllib waits forever on a network that accepts a connection and never answers
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            self.source(self.root, train=False, download=True)
        except (URLError, OSError, RuntimeError) as e:
            reason = (f"no answer for {DOWNLOAD_TIMEOUT_S:.0f} s" if isinstance(
                getattr(e, "reason", e), TimeoutError) else str(e))
            raise UserError(
                f"could not download {self.title} from {url} into "
                f"{Path(self.root) / self.folder} ({reason}). Without internet, copy the files "
                f"there or set data.root=/path/that/holds/{self.folder}{self.hint}"
            ) from None
        finally:
            socket.setdefaulttimeout(previous)

    def _load(self) -> tuple[torch.Tensor, torch.Tensor, list[str], int]:
        self._unpack()
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

    def _unpack(self) -> None:
        # gzipped files as distributed (and as Debian installs them) are unpacked in place, as
        # torchvision's own download does
        raw = Path(self.root) / self.folder
        for name in self.files:
            packed = raw / f"{name}.gz"
            if not (raw / name).exists() and packed.exists():
                with gzip.open(packed, "rb") as src, open(raw / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)

