"""Each data module reads tiny files written in the real on-disk formats (STYLE.md, 10)."""

from __future__ import annotations

import csv
import gzip
import os
import pickle
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torchvision.datasets as tvd
from torchvision.io import decode_image, encode_jpeg, write_png

from resnet_exp.core.errors import UserError
from resnet_exp.data import (
    CIFAR10,
    CIFAR100,
    Augmentation,
    Digits,
    FashionMNIST,
    ImageFolder,
    ImageNet,
    Synthetic,
)

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                 "truck"]
COMMON = dict(mean=[0.5], std=[0.25], batch_size=16, seed=0)


def batch(loader) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = next(iter(loader))
    assert x.dtype == torch.uint8 and y.dtype == torch.int64
    return x, y


def rows(dataset) -> set[int]:
    return set(dataset.index.tolist())


# -- CIFAR: torchvision's pickle batches ------------------------------------------------------


def pickled(path: Path, entry: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(entry, f)


def cifar_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """n x 3072 uint8 rows, the real layout: 1024 red, 1024 green, 1024 blue, row-major."""
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """CIFAR-10 with 4 images per class in each of the 5 training batches, 3 per class in test.

    torchvision checks the md5 of the real files; the tiny ones pass by patching that check, so
    the real parsing code runs."""
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *args, **kwargs: True)
    rng = np.random.default_rng(0)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        labels = [c for c in range(10) for _ in range(4)]
        pickled(folder / f"data_batch_{i}", {"batch_label": f"training batch {i} of 5",
                                             "labels": labels, "data": cifar_images(40, rng)})
    labels = [c for c in range(10) for _ in range(3)]
    pickled(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": labels,
                                    "data": cifar_images(30, rng)})
    pickled(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_vis": 3072})
    return tmp_path


def cifar10(root, **kwargs) -> CIFAR10:
    args = dict(root=str(root), num_classes=10, in_channels=3, image_size=32, val_size=20)
    return CIFAR10(**{**COMMON, **args, **kwargs})


def test_cifar10_reads_the_pickle_batches(cifar_root):
    data = cifar10(cifar_root)
    data.setup("fit")
    assert data.classes == CIFAR10_NAMES
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (180, 20, 30)
    assert not rows(data.train_set) & rows(data.val_set)
    x, y = batch(data.train_dataloader())
    assert x.shape == (16, 3, 32, 32)
    test_batch = pickle.loads((cifar_root / "cifar-10-batches-py" / "test_batch").read_bytes())
    x, y = batch(data.test_dataloader())
    assert torch.equal(x, torch.from_numpy(test_batch["data"]).view(30, 3, 32, 32))  # eval: 32
    assert y.tolist() == test_batch["labels"]
    assert data.train_set.x.data_ptr() == data.test_set.x.data_ptr()  # the set is held once


def test_split_is_fixed_by_split_seed_not_the_run_seed(cifar_root):
    a, b, c = cifar10(cifar_root, seed=1), cifar10(cifar_root, seed=2), cifar10(cifar_root,
                                                                             split_seed=1)
    for data in (a, b, c):
        data.setup()
    assert rows(a.val_set) == rows(b.val_set) != rows(c.val_set)
    again = cifar10(cifar_root, seed=1)
    again.setup()
    first = [batch(d.train_dataloader())[1].tolist() for d in (a, again, b)]
    assert first[0] == first[1] != first[2]  # shuffling follows the run seed


def test_class_filter_relabels_and_caps_training_images(cifar_root):
    data = cifar10(cifar_root, classes=["dog", "cat"], num_classes=2, max_per_class=5, val_size=4)
    data.setup()
    assert data.classes == ["dog", "cat"]
    train_labels = data.train_set.y[data.train_set.index]
    assert torch.bincount(train_labels).tolist() == [5, 5]
    assert len(data.val_set) == 4 and len(data.test_set) == 6
    test_batch = pickle.loads((cifar_root / "cifar-10-batches-py" / "test_batch").read_bytes())
    original = torch.tensor(test_batch["labels"])[data.test_set.index - 200]
    relabelled = data.test_set.y[data.test_set.index]
    assert torch.equal(relabelled, (original == 3).long())  # dog (5) -> 0, cat (3) -> 1
    kept = data.train_set.index[train_labels == 0]
    pool = sorted(set(range(200)) - rows(data.val_set))
    first_dogs = [i for i in pool if data.train_set.y[i] == 0][:5]
    assert kept.tolist() == first_dogs  # the first ones in a fixed order


def test_num_classes_mismatch_says_what_to_set(cifar_root):
    with pytest.raises(UserError, match="data.num_classes=10 but data.classes keeps 2: "
                                        "set data.num_classes=2"):
        cifar10(cifar_root, classes=["cat", "dog"]).setup()
    with pytest.raises(UserError, match="CIFAR-10 has 10 classes: set data.num_classes=10"):
        cifar10(cifar_root, num_classes=100).setup()
    with pytest.raises(UserError, match="'kitten'"):
        cifar10(cifar_root, classes=["kitten"], num_classes=1).setup()


def test_missing_cifar10_names_the_folder_and_the_fix(tmp_path):
    with pytest.raises(UserError) as error:
        cifar10(tmp_path / "nowhere").setup()
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py") in message
    assert "CIFAR-10" in message and "data.download=true" in message
    assert "data.root=/path/that/holds/cifar-10-batches-py" in message


def test_failed_download_is_a_user_error(tmp_path, monkeypatch):
    def offline(self):
        raise OSError("no network")  # what urllib raises here, as URLError

    monkeypatch.setattr(tvd.CIFAR10, "download", offline)
    with pytest.raises(UserError, match="could not download CIFAR-10.*no network"):
        cifar10(tmp_path, download=True).setup()


def test_cifar100_reads_fine_labels(tmp_path, monkeypatch):
    monkeypatch.setattr(tvd.CIFAR100, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *args, **kwargs: True)
    rng = np.random.default_rng(1)
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    names = [f"class_{i:03d}" for i in range(100)]
    for split, n in (("train", 300), ("test", 100)):
        fine = np.arange(n) % 100
        pickled(folder / split, {"filenames": [f"{i}.png" for i in range(n)],
                                 "fine_labels": fine.tolist(),
                                 "coarse_labels": (fine // 5).tolist(),
                                 "data": cifar_images(n, rng)})
    pickled(folder / "meta", {"fine_label_names": names, "coarse_label_names": names[:20]})
    data = CIFAR100(root=str(tmp_path), num_classes=100, in_channels=3, image_size=32,
                    val_size=50, **COMMON)
    data.setup()
    assert data.classes == names
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (250, 50, 100)
    assert data.test_set.y[data.test_set.index].tolist() == list(range(100))
    assert batch(data.val_dataloader())[0].shape == (32, 3, 32, 32)  # eval batch: 2 x 16


# -- Fashion-MNIST: IDX files -----------------------------------------------------------------


def idx(path: Path, array: np.ndarray) -> None:
    """The IDX format: zero bytes, type 0x08 (ubyte), rank, big-endian sizes, then the data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I",
                                                                        *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reads_gzipped_idx_files(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(2)
    images = {split: rng.integers(0, 256, (n, 28, 28)) for split, n in (("train", 60),
                                                                        ("t10k", 20))}
    for split, array in images.items():
        idx(raw / f"{split}-images-idx3-ubyte.gz", array)
        idx(raw / f"{split}-labels-idx1-ubyte.gz", np.arange(len(array)) % 10)
    data = FashionMNIST(root=str(tmp_path), num_classes=10, in_channels=1, image_size=28,
                        val_size=10, **COMMON)
    data.setup()
    assert data.classes[0] == "T-shirt/top" and len(data.classes) == 10
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (50, 10, 20)
    x, y = batch(data.test_dataloader())
    assert x.shape == (20, 1, 28, 28)
    assert torch.equal(x[:, 0], torch.from_numpy(images["t10k"]).byte())
    assert y.tolist() == [i % 10 for i in range(20)]


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed "
                           "(apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_the_debian_package(tmp_path):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in DEBIAN_FASHION.glob("*-ubyte.gz"):
        (raw / path.name).symlink_to(path)
    data = FashionMNIST(root=str(tmp_path), num_classes=10, in_channels=1, image_size=28,
                        val_size=5000, **COMMON)
    data.setup()
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (55000, 5000, 10000)
    pixels = data.train_set.x[:60000].float().div(255)
    assert abs(pixels.mean().item() - 0.2860) < 0.001 and abs(pixels.std().item() - 0.3530) < 0.001


def test_missing_fashion_mnist_points_to_the_debian_package(tmp_path):
    with pytest.raises(UserError, match="dataset-fashion-mnist") as error:
        FashionMNIST(root=str(tmp_path), num_classes=10, in_channels=1, image_size=28,
                     **COMMON).setup()
    assert str(tmp_path / "FashionMNIST" / "raw") in str(error.value)


# -- digits and synthetic ---------------------------------------------------------------------


def digits(**kwargs) -> Digits:
    args = dict(num_classes=10, in_channels=1, image_size=8, mean=[0.3053], std=[0.3759],
                batch_size=64)
    data = Digits(**{**args, **kwargs})
    data.setup()
    return data


def test_digits_split_is_fixed_and_disjoint():
    a, b = digits(seed=1), digits(seed=2)
    splits = [rows(a.train_set), rows(a.val_set), rows(a.test_set)]
    assert [len(s) for s in splits] == [1257, 180, 360]
    assert set.union(*splits) == set(range(1797)) and sum(map(len, splits)) == 1797
    assert splits == [rows(b.train_set), rows(b.val_set), rows(b.test_set)]
    assert torch.equal(a.train_set.x, b.train_set.x)
    x, y = batch(a.train_dataloader())
    assert x.shape == (64, 1, 8, 8) and a.train_set.x.max() == 255
    assert a.classes == [str(i) for i in range(10)]
    assert torch.bincount(a.test_set.y[a.test_set.index]).min() > 20  # every digit is tested


def test_hook_without_a_trainer_does_not_augment():
    data = digits(augmentation=Augmentation(crop_padding=4, flip=True))
    x, y = batch(data.train_dataloader())
    out, labels = data.on_after_batch_transfer((x, y), 0)
    expected = (x.float() / 255 - 0.3053) / 0.3759
    assert out.dtype == torch.float32 and torch.allclose(out, expected) and labels is y
    raw = digits(normalize=False).prepare_batch(x, y, train=False)[0]
    assert raw.min() >= 0 and raw.max() <= 1


def test_an_epoch_resumed_mid_way_continues_its_order_and_its_augmentations():
    from resnet_exp.data.order import EpochShuffle

    order = list(EpochShuffle(100, seed=3, epoch=2))
    resumed = EpochShuffle(100, seed=3, epoch=2, skip=40)
    assert list(resumed) == order[40:] and len(resumed) == 100  # Lightning counts the whole epoch
    resumed.set_epoch(3)
    assert list(resumed) == list(EpochShuffle(100, seed=3, epoch=3))  # the next epoch is whole
    assert sorted(order) == list(range(100)) and order != list(EpochShuffle(100, 3, epoch=1))

    # the augmentation of batch k depends on (seed, epoch, k) only: what a data module restored
    # from a checkpoint written after 3 batches draws for the 4th is what the uninterrupted one drew
    augment = Augmentation(crop_padding=4, flip=True, cutout_holes=1, cutout_size=3)
    x = torch.randint(0, 256, (64, 1, 8, 8), dtype=torch.uint8)
    y = torch.zeros(64, dtype=torch.long)
    straight = digits(augmentation=augment)
    draws = [straight.prepare_batch(x, y, train=True)[0] for _ in range(4)]
    assert straight.state_dict() == {"epoch": 0, "batch": 4}
    assert not torch.equal(draws[2], draws[3])
    restored = digits(augmentation=augment)
    restored.load_state_dict({"epoch": 0, "batch": 3})
    assert restored.position.start(epoch=0, batches=10) == 3  # what the training loader does
    assert torch.equal(restored.prepare_batch(x, y, train=True)[0], draws[3])


class Recorder(pl.LightningModule):
    """A linear model that records what each stage's batches look like."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.fc = torch.nn.Linear(features, classes)
        self.seen: dict[str, list] = {"train": [], "val": []}

    def _step(self, batch, stage):
        x, y = batch
        self.seen[stage].append((x.dtype, x.mean().item()))
        return torch.nn.functional.cross_entropy(self.fc(x.flatten(1)), y)

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_gets_float_batches_augmented_only_in_training(tmp_path):
    # cutout fills 0 on normalised images of mean about 0 and std 1: only visible through a
    # constant image, here all-255 pixels normalised with mean 0, std 1
    data = Synthetic(num_classes=2, in_channels=1, image_size=8, mean=[0.0], std=[1.0],
                     num_train=32, num_val=16, num_test=16, noise=0.0, batch_size=16, seed=0,
                     augmentation=Augmentation(cutout_holes=1, cutout_size=4))
    model = Recorder(64, 2)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, default_root_dir=tmp_path)
    data.setup()
    for subset in (data.train_set, data.val_set):
        subset.x.fill_(255)
    trainer.fit(model, datamodule=data)
    assert len(model.seen["train"]) == 2 and len(model.seen["val"]) == 1
    assert {dtype for dtype, _ in model.seen["train"] + model.seen["val"]} == {torch.float32}
    assert all(mean < 1 for _, mean in model.seen["train"])  # holes of zeros
    assert all(mean == 1 for _, mean in model.seen["val"])


def test_synthetic_data_are_learnable():
    data = Synthetic(num_classes=10, in_channels=3, image_size=8, mean=[0.5], std=[0.32],
                     num_train=500, num_val=100, num_test=200, batch_size=50, seed=0)
    data.setup()
    model = torch.nn.Linear(192, 10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for x, y in data.train_dataloader():
        x, y = data.prepare_batch(x, y, train=True)
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x.flatten(1)), y).backward()
        optimizer.step()
    x, y = data.prepare_batch(*batch(data.test_dataloader()), train=False)
    accuracy = (model(x.flatten(1)).argmax(1) == y).float().mean().item()
    assert accuracy > 0.5  # chance is 0.1


# -- folders ----------------------------------------------------------------------------------


def image(rng: np.random.Generator, height: int, width: int) -> torch.Tensor:
    return torch.from_numpy(rng.integers(0, 256, (3, height, width), dtype=np.uint8))


def write_tree(root: Path, counts: dict[str, int], classes=("alpha", "beta", "gamma"),
               size=(16, 16), seed=0) -> None:
    """An ImageFolder tree, PNG files in train/ and JPEG in the other splits."""
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        for name in classes:
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                picture = image(rng, *size)
                if split == "train":
                    write_png(picture, str(root / split / name / f"{i:03d}.png"))
                else:
                    (root / split / name / f"{i:03d}.jpeg").write_bytes(
                        encode_jpeg(picture).numpy().tobytes())


def folder(root, **kwargs) -> ImageFolder:
    args = dict(root=str(root), num_classes=3, in_channels=3, image_size=16, num_workers=0)
    return ImageFolder(**{**COMMON, **args, **kwargs})


def test_image_folder_workers_default_to_the_cpus_this_process_may_use(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 8, 9, 10, 11},
                        raising=False)  # a SLURM task's CPU set on a bigger machine
    data = folder(tmp_path, num_workers=None)
    assert data.workers == 8
    data.trainer = SimpleNamespace(num_devices=2)  # two training processes on this machine
    assert data.workers == 4
    assert folder(tmp_path, num_workers=3).workers == 3


def test_image_folder_splits(tmp_path):
    write_tree(tmp_path, {"train": 6, "val": 2, "test": 3}, size=(20, 30))
    data = folder(tmp_path)
    data.setup()
    assert data.classes == ["alpha", "beta", "gamma"]
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (18, 6, 9)
    x, y = batch(data.test_dataloader())
    assert x.shape == (9, 3, 16, 16) and y.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    held = folder(tmp_path, val_size=3, classes=["gamma", "alpha"], num_classes=2)
    held.setup()
    assert (len(held.train_set), len(held.val_set), len(held.test_set)) == (9, 3, 6)
    no_test = tmp_path / "no_test"
    write_tree(no_test, {"train": 2, "val": 2})
    data = folder(no_test)
    data.setup()
    assert data.test_set.index.tolist() == data.val_set.index.tolist() == list(range(6, 12))


def test_image_folder_in_memory_holds_exact_pixels(tmp_path):
    write_tree(tmp_path, {"train": 4, "test": 2})
    data = folder(tmp_path, in_memory=True)
    data.setup()
    first = data.train_set.x[data.train_set.index[0]]
    assert torch.equal(first, decode_image(str(tmp_path / "train" / "alpha" / "000.png")))
    assert data.train_set.y[data.train_set.index].tolist() == [0] * 4 + [1] * 4 + [2] * 4
    capped = folder(tmp_path, in_memory=True, val_size=3, max_per_class=2)
    capped.setup()
    assert capped.train_set.x.shape == (6 + 3 + 6, 3, 16, 16)  # only the images a split uses
    x, y = batch(capped.train_dataloader())
    assert x.shape == (6, 3, 16, 16) and sorted(y.tolist()) == [0, 0, 1, 1, 2, 2]


def test_empty_and_non_image_files_are_all_named_in_one_line(tmp_path):
    write_tree(tmp_path, {"train": 4, "test": 2})
    (tmp_path / "train" / "alpha" / "empty.jpg").write_bytes(b"")
    (tmp_path / "train" / "beta" / "notes.jpg").write_text("a text file named like a JPEG")
    data = folder(tmp_path, in_memory=True)
    with pytest.raises(UserError, match=r"^2 file\(s\) of the image folder .*empty.jpg, .*"
                                        r"notes.jpg\): remove or replace them$"):
        data.setup()


@pytest.mark.parametrize("workers", [-1, 1.5])
def test_a_negative_worker_count_is_one_line(tmp_path, workers):
    with pytest.raises(UserError, match=f"data.num_workers={workers}: give 0"):
        assert folder(tmp_path, num_workers=workers).workers is None  # never reached


def test_image_folder_workers_decode_and_crop(tmp_path):
    write_tree(tmp_path, {"train": 4, "val": 2}, size=(40, 24))
    data = folder(tmp_path, num_workers=1, augmentation=Augmentation(random_resized_crop=16,
                                                                      flip=True))
    data.setup()
    x, _ = batch(data.train_dataloader())
    assert x.shape == (12, 3, 16, 16)
    x, _ = batch(data.val_dataloader())
    assert x.shape == (6, 3, 16, 16)
    # training may crop smaller than evaluation (torchvision's 176 / 224); evaluation crops to
    # data.image_size, and a different center_crop is refused
    small = folder(tmp_path, image_size=32, num_workers=1,
                   augmentation=Augmentation(random_resized_crop=16))
    small.setup()
    assert batch(small.train_dataloader())[0].shape[-2:] == (16, 16)
    assert batch(small.val_dataloader())[0].shape[-2:] == (32, 32)
    with pytest.raises(UserError, match="center_crop=16 but data.image_size=32"):
        folder(tmp_path, image_size=32,
               augmentation=Augmentation(resize=36, center_crop=16)).setup()


def test_missing_image_folder_names_the_folder(tmp_path):
    with pytest.raises(UserError, match="data.root=") as error:
        folder(tmp_path / "nothing").setup()
    assert str(tmp_path / "nothing") in str(error.value)
    with pytest.raises(UserError, match="Kaggle|kaggle"):
        ImageNet(root=str(tmp_path), num_classes=3, in_channels=3, image_size=16,
                 **COMMON).setup()


def test_imagenet_reads_the_kaggle_layout(tmp_path):
    wnids = ["n01440764", "n01443537", "n01484850"]
    cls_loc = tmp_path / "ILSVRC" / "Data" / "CLS-LOC"
    write_tree(cls_loc, {"train": 3}, classes=wnids, size=(20, 20))
    (cls_loc / "val").mkdir()
    rng = np.random.default_rng(3)
    truth = {}
    with open(tmp_path / "LOC_val_solution.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        for i in range(7, 0, -1):  # any order in the file
            image_id, wnid = f"ILSVRC2012_val_{i:08d}", wnids[i % 3]
            truth[image_id] = wnids.index(wnid)
            (cls_loc / "val" / f"{image_id}.JPEG").write_bytes(
                encode_jpeg(image(rng, 20, 25)).numpy().tobytes())
            writer.writerow([image_id, f"{wnid} 1 2 10 12 {wnid} 3 4 15 16"])
    data = ImageNet(root=str(tmp_path), num_classes=3, in_channels=3, image_size=16,
                    num_workers=0, augmentation=Augmentation(resize=18, center_crop=16), **COMMON)
    data.setup()
    assert data.classes == wnids
    assert len(data.train_set) == 9 and len(data.val_set) == len(data.test_set) == 7
    x, y = batch(data.test_dataloader())
    assert x.shape == (7, 3, 16, 16)
    assert y.tolist() == [truth[k] for k in sorted(truth)]


# -- the real CIFAR-10 JPEG copy --------------------------------------------------------------


@pytest.mark.skipif(not (SHARED_DATA / "cifar10-jpeg.tar.gz").exists(),
                    reason=f"no {SHARED_DATA / 'cifar10-jpeg.tar.gz'} (the real CIFAR-10 JPEGs)")
def test_real_cifar10_jpegs_in_memory(tmp_path):
    def first_of_each_class(members):
        for member in members:
            parts = member.name.split("/")
            if len(parts) < 3 or (member.isfile() and int(parts[2].split(".")[0]) < 40):
                yield member

    with tarfile.open(SHARED_DATA / "cifar10-jpeg.tar.gz") as archive:
        archive.extractall(tmp_path, members=first_of_each_class(archive), filter="data")
    data = ImageFolder(root=str(tmp_path), num_classes=10, in_channels=3, image_size=32,
                       mean=[0.4914, 0.4822, 0.4465], std=[0.2470, 0.2435, 0.2616],
                       val_size=50, in_memory=True, num_workers=2, batch_size=100)
    data.setup()
    assert data.classes == CIFAR10_NAMES  # alphabetical folders = CIFAR-10's label order
    assert (len(data.train_set), len(data.val_set), len(data.test_set)) == (350, 50, 400)
    x, y = batch(data.train_dataloader())
    assert x.shape == (100, 3, 32, 32)
    pixels = data.train_set.x.float().div(255)
    means = pixels.mean((0, 2, 3))
    assert torch.allclose(means, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.05)
    normalised, _ = data.prepare_batch(x, y, train=False)
    assert abs(normalised.mean().item()) < 0.2 and abs(normalised.std().item() - 1) < 0.2
