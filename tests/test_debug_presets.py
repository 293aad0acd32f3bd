"""Debug presets mean what they say with any experiment: `debug=overfit` turns off every random
training transform the experiment, its trick or the user's own augmentation class turned on
(crop, flip, auto-augment, Cutout, erasing, random-resized crop, MixUp, CutMix, anything else),
so memorising its batches tests the pipeline.
"""

from __future__ import annotations

import json

import pytest
import torch
from hydra.utils import instantiate

import resnet_exp
from resnet_exp.core import config
from resnet_exp.data.augment import Augmentation

EXPERIMENTS = sorted(p.stem for p in (config.CONF_DIR / "experiment").glob("*.yaml"))
TRICKS = sorted(p.stem for p in (config.CONF_DIR / "trick").glob("*.yaml"))


@pytest.mark.parametrize("overrides", [[f"experiment={e}"] for e in EXPERIMENTS]
                         + [["experiment=cifar10_tricks_ablation", f"trick={t}"] for t in TRICKS]
                         + [["augmentation=standard",
                             "augmentation._target_=tests.test_debug_presets.Noise"]],
                         ids=lambda o: ",".join(o))
def test_overfit_gives_the_data_no_augmentation_whatever_was_chosen(compose_cfg, overrides):
    """The data module gets no augmentation at all, of any class (a user's own included): its
    training batches are prepared as its test batches are, the same every epoch."""
    cfg = compose_cfg(*overrides, "debug=overfit")
    assert cfg.data.augmentation is None
    datamodule = instantiate(cfg.data)
    assert datamodule.augmentation is None
    images = torch.randint(0, 256, (8, cfg.data.in_channels, 8, 8), dtype=torch.uint8)
    labels = torch.arange(8) % 4
    first, second = (datamodule.prepare_batch(images, labels, train=True,
                                              generator=torch.Generator().manual_seed(seed))
                     for seed in (1, 2))
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b)


class Noise(Augmentation):
    """A user's own random transform, which no key of the shipped ones turns off."""

    def after_normalize(self, x, generator=None):
        return x + torch.randn(x.shape, generator=generator)


@pytest.mark.slow
def test_overfit_memorises_its_batches_under_the_heaviest_recipe(in_tmp):
    """Every trick of the ablation at once (MixUp, CutMix, TrivialAugment, label smoothing,
    EMA, ...) on the digits: 4 batches of 128 images, learned to 100% in 50 epochs."""
    run = resnet_exp.run(["experiment=cifar10_tricks_ablation", "trick=all", "data=digits",
                          "debug=overfit", "callbacks=lean"])
    assert run.status == "finished" and run.dir.parent == in_tmp / "outputs" / "debug"
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert metrics["final/train/acc"] >= 0.99
