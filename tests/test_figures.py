"""Per-class test results against scikit-learn, once per run; the augmentation grid leaves the
run as it was; the prediction grid's colours."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from resnet_exp import runs
from resnet_exp.callbacks import AugmentedSamples, PerClassMetrics
from resnet_exp.core import figures
from resnet_exp.data import Augmentation, Synthetic
from resnet_exp.training.module import Classifier


def datamodule() -> Synthetic:
    return Synthetic(num_classes=4, in_channels=3, image_size=8, mean=[0.5], std=[0.32],
                     batch_size=16, num_train=64, num_val=16, num_test=70, noise=96.0,
                     augmentation=Augmentation(crop_padding=2, flip=True), seed=0)


def fit(tmp_path, callbacks, steps=3):
    pl.seed_everything(0, workers=True)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(8, 4))
    module = Classifier(net, 4, optimizer=functools.partial(torch.optim.SGD, lr=0.2))
    dm = datamodule()
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=steps,
                         limit_val_batches=0, callbacks=callbacks, deterministic=True,
                         logger=TensorBoardLogger(tmp_path, name="tensorboard", version=""),
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, datamodule=dm)
    return trainer, module, dm


def test_per_class_results_match_scikit_learn_and_are_computed_once(tmp_path):
    callback = PerClassMetrics(output_dir=str(tmp_path), num_samples=12)
    trainer, module, dm = fit(tmp_path, [callback])
    trainer.test(module, datamodule=dm, verbose=False)

    # The reference: the same network over the test set, scored by scikit-learn.
    module.eval()
    x, y = dm.test_set.x[dm.test_set.index], dm.test_set.y[dm.test_set.index]
    with torch.no_grad():
        pred = module(dm.prepare_batch(x, y, train=False)[0]).argmax(1).numpy()
    y = y.numpy()
    assert 0 < (pred == y).mean() < 1, "a test needs both right and wrong predictions"
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=range(4), zero_division=0)
    results = callback.run_metrics["test/per_class"]
    assert list(results) == ["class_0", "class_1", "class_2", "class_3"]
    for i, name in enumerate(results):
        assert results[name]["precision"] == pytest.approx(precision[i], abs=1e-6)
        assert results[name]["recall"] == pytest.approx(recall[i], abs=1e-6)
        assert results[name]["f1"] == pytest.approx(f1[i], abs=1e-6)
        assert results[name]["support"] == support[i]
    assert sum(r["support"] for r in results.values()) == 70

    png = tmp_path / runs.FIGURES_DIR / "confusion_matrix.png"
    written = png.stat().st_mtime_ns
    # train.py's second test, of the last checkpoint: this callback sits it out
    with module.tested_as("test_last"):
        trainer.test(module, datamodule=dm, verbose=False)
    assert png.stat().st_mtime_ns == written
    assert list(callback.run_metrics) == ["test/per_class"]

    images = EventAccumulator(str(tmp_path / "tensorboard")).Reload().Tags()["images"]
    assert {"test/confusion_matrix", "test/predictions"} <= set(images)
    assert not any(tag.startswith("test_last/") for tag in images)
    assert (tmp_path / runs.FIGURES_DIR / "test_predictions.png").is_file()
    # the matrix the figure shows is scikit-learn's
    cm = confusion_matrix(y, pred, labels=range(4))
    assert cm.sum(1).tolist() == [results[n]["support"] for n in results]


def test_augmentation_grid_leaves_the_training_run_unchanged(tmp_path):
    _, with_grid, _ = fit(tmp_path / "a", [AugmentedSamples(output_dir=str(tmp_path / "a"))])
    _, without, _ = fit(tmp_path / "b", [])
    for a, b in zip(with_grid.parameters(), without.parameters(), strict=True):
        assert torch.equal(a, b)
    assert (tmp_path / "a" / runs.FIGURES_DIR / "augmented_samples.png").stat().st_size > 10_000
    events = EventAccumulator(str(tmp_path / "a" / "tensorboard")).Reload()
    assert "train/augmented_samples" in events.Tags()["images"]


def test_prediction_grid_marks_right_green_and_wrong_red():
    images = np.zeros((3, 4, 4, 1))
    fig = figures.predictions(images, [0, 1, 2], [0, 2, 2], ["cat", "dog", "ship"], "t")
    titles = fig.axes[0].texts  # one mosaic, a label above each image
    assert [t.get_text() for t in titles] == ["cat / cat", "dog / ship", "ship / ship"]
    assert [t.get_color() for t in titles] == [figures.RIGHT, figures.WRONG, figures.RIGHT]
