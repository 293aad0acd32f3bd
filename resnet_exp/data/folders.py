"""Data modules for image folders: any ImageFolder tree, and ImageNet in either common layout.

Layout `<root>/train/<class>/*`, `<root>/val/<class>/*` and optionally `<root>/test/<class>/*`.
Following the ImageNet convention (whose test labels are not public), the test split is `test/`
when present, else `val/`; validation is `val_size` images held out of `train/`, or `val/` itself
when val_size=0 (then, for ImageNet, validation and test are the same 50,000 images, as in every
published ImageNet number).

Images are decoded and resized one by one in DataLoader worker processes; crops that need the full
image (random-resized crop) happen there too, and the rest of the augmentation on the device.
With `in_memory=True` every image is decoded once, resized to image_size, into one uint8 tensor,
which then serves like CIFAR's (the CIFAR-10 JPEG copy in ../shared/data is used this way).
"""

from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torchvision.datasets as tvd
from torch.utils.data import Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms import v2

from resnet_exp.core.errors import UserError
from resnet_exp.data.augment import Augmentation
from resnet_exp.data.module import DataModule
from resnet_exp.data.order import IndexedTensors


def read_images(paths: list[str], channels: int) -> list[torch.Tensor]:
    """Decode image files into uint8 C x H x W tensors with torchvision's libjpeg-turbo/libpng
    decoders: 60 us per CIFAR-sized JPEG against 95 us through PIL, and they release the GIL.
    Files that are empty or no image are named, all of them, in one UserError."""
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    data = []
    for path in paths:
        with open(path, "rb") as f:
            data.append(f.read())
    encoded = [torch.frombuffer(bytearray(d), dtype=torch.uint8) if d else None for d in data]
    try:
        if all(d[:2] == b"\xff\xd8" for d in data):  # all JPEG: one batched call, 2x faster
            return decode_jpeg(encoded, mode=mode)
        return [decode_image(e, mode=mode) for e in encoded]
    except (RuntimeError, TypeError):  # name every file that fails, not only the first
        bad = [p for p, e in zip(paths, encoded, strict=True) if not _decodes(e, mode)]
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise UserError(f"{len(bad)} file(s) of the image folder are empty or no image "
                        f"torchvision can decode ({shown}): remove or replace them") from None


def _decodes(encoded: torch.Tensor | None, mode: ImageReadMode) -> bool:
    try:
        decode_image(encoded, mode=mode)
    except (RuntimeError, TypeError):
        return False
    return True


class ImageFiles(Dataset):
    """Rows `index` of a list of image files, decoded and transformed per image in workers."""

    def __init__(self, paths: np.ndarray, labels: torch.Tensor, index: torch.Tensor,
                 channels: int, transform: v2.Compose) -> None:
        # paths as one numpy string array, not a list of str: worker processes would otherwise
        # copy the pages of a million refcounted objects (pytorch/pytorch#13246)
        self.paths, self.labels, self.index = paths, labels, index
        self.channels, self.transform = channels, transform

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.index[i])
        [image] = read_images([str(self.paths[row])], self.channels)
        return self.transform(image), self.labels[row]


def _scan(folder: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    return tvd.folder.make_dataset(
        str(folder), class_to_idx, extensions=tvd.folder.IMG_EXTENSIONS, allow_empty=True
    )


class ImageFolder(DataModule):
    """Images in class folders (see the module docstring for the splits).

    root: the folder holding train/ and val/ or test/. num_workers: DataLoader processes that
    decode (None: see `workers`). in_memory: decode everything once into memory instead. The
    other arguments are DataModule's.
    """

    title = "image folder"

    def __init__(self, root: str, num_workers: int | None = None, in_memory: bool = False,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = root
        self.num_workers = num_workers
        self.in_memory = in_memory

    @property
    def workers(self) -> int:
        """`num_workers`, or the cores this process may use (a SLURM or cgroup CPU set, not
        the whole machine's) shared among the training processes of this machine."""
        if self.num_workers is not None:
            if not isinstance(self.num_workers, int) or self.num_workers < 0:
                raise UserError(f"data.num_workers={self.num_workers}: give 0 (load in the "
                                "training process), a number of worker processes, or null (one "
                                "per core this process may use)")
            return self.num_workers
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
        per_machine = self.trainer.num_devices if self.trainer is not None else 1
        return max(1, (cores or os.cpu_count() or 1) // per_machine)

    def _missing(self, looked: str) -> UserError:
        return UserError(
            f"{self.title} not found: looked for {looked} in {Path(self.root).resolve()}. "
            f"Set data.root=/path/that/holds/train (or the environment variable "
            f"RESNET_EXP_DATA), with one folder of images per class in train/ and val/ or test/"
        )

    def _files(self) -> tuple[list[str], list, list | None, list]:
        """The classes, then (path, label) lists: training, validation (None: none) and test,
        which may be the validation list itself."""
        root = Path(self.root)
        if not (root / "train").is_dir():
            raise self._missing("train/<class>/*")
        try:
            names, class_to_idx = tvd.folder.find_classes(str(root / "train"))
        except FileNotFoundError:
            raise self._missing("class folders in train/") from None
        train = _scan(root / "train", class_to_idx)
        val = _scan(root / "val", class_to_idx) if (root / "val").is_dir() else None
        test = _scan(root / "test", class_to_idx) if (root / "test").is_dir() else val
        if test is None:
            raise self._missing("val/<class>/* or test/<class>/* beside train/")
        return names, train, val, test

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        names, train, val, test = self._files()
        splits = [train, val or [], [] if test is val else test]
        samples = [sample for split in splits for sample in split]
        paths = np.array([path for path, _ in samples])
        labels = torch.tensor([label for _, label in samples], dtype=torch.long)
        rows = torch.arange(len(samples)).split([len(split) for split in splits])
        val_rows = None if val is None else rows[1]
        test_rows = rows[1] if test is val else rows[2]
        labels, *index = self.split(labels, names, rows[0], test_rows, val_rows)
        augment = self.augmentation or Augmentation()
        if self.in_memory:
            self._decode(paths, labels, index)
            return
        # Evaluation crops to data.image_size, which the model's shape check and summary use.
        # Training may crop smaller: torchvision's ResNet-50 V2 recipe trains on 176-pixel crops
        # and tests at 224 (the train-test resolution discrepancy, Touvron et al. 2019).
        if augment.center_crop not in (None, self.image_size):
            raise UserError(
                f"augmentation.center_crop={augment.center_crop} but data.image_size="
                f"{self.image_size}: the evaluation crop is the data's image size; make them equal"
            )
        self.train_set, self.val_set, self.test_set = (
            ImageFiles(paths, labels, i, self.in_channels,
                       augment.per_image(train, self.image_size))
            for i, train in zip(index, (True, False, False), strict=True)
        )

    def _decode(self, paths: np.ndarray, labels: torch.Tensor, index: list[torch.Tensor]) -> None:
        if self.augmentation is not None and self.augmentation.random_resized_crop:
            raise UserError(
                "augmentation.random_resized_crop needs the full images, but data.in_memory=true "
                "keeps them resized: set data.in_memory=false or use augmentation=standard"
            )
        used = torch.cat(index).unique()  # only the rows a split uses, e.g. with max_per_class
        position = torch.full((len(paths),), -1, dtype=torch.long)
        position[used] = torch.arange(len(used))
        size = self.image_size
        x = torch.empty((len(used), self.in_channels, size, size), dtype=torch.uint8)
        resize = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size)])

        def decode(start: int) -> None:
            chunk = [str(p) for p in paths[used[start : start + 1024].numpy()]]
            images = read_images(chunk, self.in_channels)
            if any(image.shape[-2:] != (size, size) for image in images):
                images = [resize(image) for image in images]
            x[start : start + len(images)] = torch.stack(images)

        # threads, not processes: the decoders release the GIL and no image is pickled back
        with ThreadPoolExecutor(self.workers or 1) as pool:
            list(pool.map(decode, range(0, len(used), 1024)))
        self.train_set, self.val_set, self.test_set = (
            IndexedTensors(x, labels[used], position[i]) for i in index
        )


class ImageNet(ImageFolder):
    """ILSVRC-2012 (Russakovsky et al. 2015), 1,000 classes named by WordNet id.

    Reads the ImageFolder layout (`<root>/train/<wnid>/*`, `<root>/val/<wnid>/*`) or the Kaggle
    layout (kaggle competitions download -c imagenet-object-localization-challenge):
    `<root>/ILSVRC/Data/CLS-LOC/train/<wnid>/*.JPEG`, a flat `<root>/ILSVRC/Data/CLS-LOC/val/` and
    its labels in `<root>/LOC_val_solution.csv`, whose PredictionString starts with the wnid.
    """

    title = "ImageNet"

    def _missing(self, looked: str) -> UserError:
        return UserError(
            f"ImageNet not found: looked for {looked} in {Path(self.root).resolve()}. It cannot "
            f"be downloaded automatically (its licence needs a login): get it from "
            f"https://www.kaggle.com/c/imagenet-object-localization-challenge or image-net.org, "
            f"then set data.root=/path/that/holds/ILSVRC (or train/ and val/)"
        )

    def _files(self) -> tuple[list[str], list, list | None, list]:
        root = Path(self.root)
        kaggle = root / "ILSVRC" / "Data" / "CLS-LOC"
        if (root / "train").is_dir() or not (kaggle / "train").is_dir():
            return super()._files()
        solution = root / "LOC_val_solution.csv"
        if not solution.is_file():
            raise self._missing("LOC_val_solution.csv beside ILSVRC/")
        names, class_to_idx = tvd.folder.find_classes(str(kaggle / "train"))
        train = _scan(kaggle / "train", class_to_idx)
        with open(solution, newline="") as f:
            rows = sorted((r["ImageId"], r["PredictionString"].split()[0])
                          for r in csv.DictReader(f))
        val = [(str(kaggle / "val" / f"{image}.JPEG"), class_to_idx[wnid])
               for image, wnid in rows if wnid in class_to_idx]
        return names, train, val, val
