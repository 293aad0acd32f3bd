"""Debug presets mean what they say with any experiment: `debug=overfit` turns off every random
training transform the experiment or its trick turned on (crop, flip, auto-augment, Cutout,
erasing, random-resized crop, MixUp, CutMix), so memorising its batches tests the pipeline.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import run_cli
from hydra.utils import instantiate

from resnet_exp import config

EXPERIMENTS = sorted(p.stem for p in (config.CONF_DIR / "experiment").glob("*.yaml"))
TRICKS = sorted(p.stem for p in (config.CONF_DIR / "trick").glob("*.yaml"))


def _transforms_twice(augmentation, seed: int) -> list[torch.Tensor]:
    """Every random step of the training path on one fixed batch, drawn from `seed`."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    labels = torch.arange(8) % 4
    x = augmentation.before_normalize(images, generator)
    x = augmentation.after_normalize(x.float() / 255, generator)
    x, y = augmentation.mix(x, labels, num_classes=4, generator=generator)
    crop = augmentation.per_image(train=True, image_size=24)(images[0])
    return [x, y, crop]


@pytest.mark.parametrize("overrides", [[f"experiment={e}"] for e in EXPERIMENTS]
                         + [["experiment=cifar10_tricks_ablation", f"trick={t}"] for t in TRICKS],
                         ids=lambda o: ",".join(o))
def test_overfit_draws_the_same_training_batch_every_time(compose_cfg, overrides):
    cfg = compose_cfg(*overrides, "debug=overfit")
    augmentation = instantiate(cfg.augmentation)
    first, second = _transforms_twice(augmentation, 1), _transforms_twice(augmentation, 2)
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a, b), augmentation


@pytest.mark.slow
def test_overfit_memorises_its_batches_under_the_heaviest_recipe(tmp_path):
    """Every trick of the ablation at once (MixUp, CutMix, TrivialAugment, label smoothing,
    EMA, ...) on the digits: 4 batches of 128 images, learned to 100% in 50 epochs."""
    result = run_cli(["experiment=cifar10_tricks_ablation", "trick=all", "data=digits",
                      "debug=overfit", "callbacks=lean"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "outputs" / "debug").iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["final/train/acc"] >= 0.99
