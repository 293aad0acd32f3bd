"""The data options' stand-in files, made once per session: real on-disk formats, a few images
each. CIFAR-10's JPEG copy in ../shared/data (its README) serves the two folder options; the
Fashion-MNIST files are IDX files of noise, as tests/test_data.py writes them (the real set is
Debian's dataset-fashion-mnist package, not installed here)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED, made_once

from combos.shrink import SIDE

CIFAR_JPEGS = SHARED / "data" / "cifar10-jpeg.tar.gz"
# per class: 12 training and 4 test images (10 classes: 120 and 40, 20 of the 120 held out)
PER_CLASS = {"train": 12, "test": 4}


def _cifar_jpegs(folder: Path) -> None:
    def first_of_each_class(members):
        for member in members:
            parts = member.name.split("/")  # train/<class>/NNNN.jpg
            if member.isdir() or (len(parts) == 3 and parts[0] in PER_CLASS
                                  and int(parts[2].split(".")[0]) < PER_CLASS[parts[0]]):
                yield member

    with tarfile.open(CIFAR_JPEGS) as archive:
        archive.extractall(folder, members=first_of_each_class(archive), filter="data")


def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as torchvision reads it: magic (0, 0, uint8, ndim), big-endian sizes, data."""
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def _fashion_idx(folder: Path) -> None:
    raw = folder / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("t10k", 40)):
        _idx(raw / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _idx(raw / f"{split}-labels-idx1-ubyte", np.arange(n) % 10)


@pytest.fixture(scope="session")
def data_args(tmp_path_factory) -> dict[str, list[str]]:
    """Each data option's overrides onto its stand-in; an option not here runs as it is (the
    embedded digits, the synthetic set) or is excluded (matrix.EXCLUDED)."""
    fashion = made_once(tmp_path_factory, "combos_fashion", _fashion_idx)
    args = {"fashion_mnist": [f"data.root={fashion}", "data.val_size=20"]}
    if CIFAR_JPEGS.exists():
        jpegs = made_once(tmp_path_factory, "combos_cifar_jpegs", _cifar_jpegs)
        # in the training process (DataLoader workers would start processes on a 2-core box),
        # at 16 pixels (shrink.SIDE)
        args["imagefolder"] = [f"data.root={jpegs}", "data.val_size=20", "data.num_workers=0",
                               f"data.image_size={SIDE}"]
        # CIFAR-10's classes in the ImageFolder layout ImageNet reads too (train/, test/)
        args["imagenet"] = [f"data.root={jpegs}", "data.num_classes=10", "data.num_workers=0",
                            f"data.image_size={SIDE}"]
    return args


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Loggers that report to a service keep their run on disk instead: there is no network
    here. W&B then writes <run>/wandb/offline-run-*/; the processes a cell starts inherit it."""
    monkeypatch.setenv("WANDB_MODE", "offline")
