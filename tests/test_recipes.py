"""The studies' recipes are the published ones: learning rates stepped by the real schedulers.

Each schedule is built from the composed experiment exactly as a run builds it (the module's
`configure_optimizers` with the configured optimizer and scheduler) and stepped the way Lightning
steps it (once per optimizer step with interval=step, once per epoch otherwise).
"""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch import nn

from resnet_exp.training.module import Classifier

CIFAR10_TRAIN = 50_000  # Krizhevsky 2009


def lr_trace(cfg, steps: int, at: list[int]) -> dict[int, float]:
    """The lr in effect during scheduler step t (optimizer step or epoch t), for t in `at`."""
    module = Classifier(nn.Linear(2, 2), 2, optimizer=instantiate(cfg.optimizer),
                        scheduler=instantiate(cfg.scheduler, _convert_="all"))
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    wanted, trace = set(at), {}
    for t in range(steps):
        if t in wanted:
            trace[t] = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
    return trace


def test_he2016_resnet56_follows_the_paper(compose_cfg):
    cfg = compose_cfg("experiment=he2016_resnet56_cifar10")
    # He et al. 2016, sec 4.2: 45k/5k split, batch 128, 64k iterations, /10 at 32k and 48k
    assert cfg.data.val_size == 5000 and cfg.data.batch_size == 128
    steps_per_epoch = math.ceil((CIFAR10_TRAIN - cfg.data.val_size) / cfg.data.batch_size)
    assert steps_per_epoch == 352
    assert cfg.trainer.max_steps == 64_000 and cfg.trainer.max_epochs == -1
    assert cfg.scheduler.interval == "step"
    assert (cfg.model.depth, cfg.model.shortcut, cfg.model.residual) == (56, "A", True)
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.1, 0.9,
                                                                                     1e-4)
    assert (cfg.augmentation.crop_padding, cfg.augmentation.flip) == (4, True)
    at = [0, 351, 352, 31_999, 32_000, 47_999, 48_000, 63_999]
    trace = lr_trace(cfg, 64_000, at)
    expected = {0: 0.1, 351: 0.1, 352: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01,
                48_000: 0.001, 63_999: 0.001}
    assert trace == pytest.approx(expected)


def test_lightning_steps_the_iteration_schedule_per_optimizer_step(compose_cfg):
    """interval=step reaches Lightning: the rate drops at optimizer steps, not at epochs."""
    cfg = compose_cfg("experiment=he2016_resnet56_cifar10",
                      "scheduler.scheduler.milestones=[2,4]")
    seen = []

    class RecordLR(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append(trainer.optimizers[0].param_groups[0]["lr"])

    module = Classifier(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), 2,
                        optimizer=instantiate(cfg.optimizer),
                        scheduler=instantiate(cfg.scheduler, _convert_="all"))
    data = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.randn(24, 4), torch.randint(0, 2, (24,))),
        batch_size=4)  # 6 steps per epoch: milestones 2 and 4 fall inside the first epoch
    trainer = pl.Trainer(max_steps=6, accelerator="cpu", logger=False, callbacks=[RecordLR()],
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, train_dataloaders=data)
    assert seen == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])


# Khalaf's ResNet-56 recipe on CIFAR-10 (docs/studies.md#sources).
def test_seed002_recipe(compose_cfg):
    cfg = compose_cfg("experiment=resnet56_cifar10_steplr")
    assert cfg.model.block == "bottleneck" and cfg.model.depth == 56
    assert cfg.data.batch_size == 32 and cfg.data.normalize is False
    assert cfg.augmentation.get("crop_padding", 0) == 0 and not cfg.augmentation.get("flip")
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.02, 0.9,
                                                                                     1e-4)
    assert cfg.trainer.max_epochs == 40 and cfg.scheduler.interval == "epoch"
    # "decrease the learning rate by 50% every 10 epochs"
    trace = lr_trace(cfg, 40, [0, 9, 10, 19, 20, 30, 39])
    assert trace == pytest.approx({0: 0.02, 9: 0.02, 10: 0.01, 19: 0.01, 20: 0.005, 30: 0.0025,
                                   39: 0.0025})


def test_cutout_paper_recipe(compose_cfg):
    cfg = compose_cfg("experiment=cifar10_resnet18_cutout")
    # uoguelph-mlrg/Cutout train.py: SGD 0.1, momentum 0.9, Nesterov, wd 5e-4, batch 128,
    # 200 epochs, MultiStepLR([60, 120, 160], 0.2); cutout 1 x 16 px on CIFAR-10
    assert cfg.optimizer.nesterov is True and cfg.optimizer.weight_decay == 5e-4
    assert cfg.data.batch_size == 128 and cfg.trainer.max_epochs == 200
    assert (cfg.augmentation.cutout_holes, cfg.augmentation.cutout_size) == (1, 16)
    assert cfg.model.cifar_stem is True
    trace = lr_trace(cfg, 200, [0, 59, 60, 120, 160, 199])
    assert trace == pytest.approx({0: 0.1, 59: 0.1, 60: 0.02, 120: 0.004, 160: 0.0008,
                                   199: 0.0008})
    assert cfg.hydra.sweeper.params["augmentation.cutout_holes"] == "0,1"


def test_imagenet_reference_recipe(compose_cfg):
    cfg = compose_cfg("experiment=imagenet_plain_vs_resnet18_cutout")
    assert cfg.data.batch_size == 256 and cfg.trainer.max_epochs == 90
    assert (cfg.augmentation.random_resized_crop, cfg.augmentation.resize,
            cfg.augmentation.center_crop) == (224, 256, 224)
    trace = lr_trace(cfg, 90, [0, 29, 30, 60, 89])
    assert trace == pytest.approx({0: 0.1, 29: 0.1, 30: 0.01, 60: 0.001, 89: 0.001})
    cutout = compose_cfg("experiment=imagenet_plain_vs_resnet18_cutout",
                         "augmentation=imagenet_cutout").augmentation
    # CIFAR-10's hole (16 of 32 px) scaled to the 224 crop; the rest of the recipe unchanged
    assert (cutout.cutout_holes, cutout.cutout_size, cutout.random_resized_crop) == (1, 112, 224)


def test_vgg_sweep_recipe(compose_cfg):
    cfg = compose_cfg("experiment=vgg_depth_sweep_cifar100")
    # Arenas López: 47,500 / 2,500 / 10,000, Adam 1e-3, cosine over 100 epochs, batch 100
    assert cfg.data.num_classes == 100 and cfg.data.val_size == 2500
    assert cfg.data.batch_size == 100 and cfg.trainer.max_epochs == 100
    trace = lr_trace(cfg, 100, [0, 50, 99])
    eta_min = cfg.scheduler.scheduler.eta_min
    assert trace[0] == pytest.approx(1e-3)
    assert trace[50] == pytest.approx(eta_min + (1e-3 - eta_min) / 2)
    assert trace[99] < 2.1e-5
    plain = compose_cfg("experiment=vgg_depth_sweep_cifar100", "model.residual=false").model
    assert plain.batch_norm is False  # plain vs residual + BN, as Arenas López compares them


def test_warmup_cosine_values(compose_cfg):
    cfg = compose_cfg("scheduler=warmup_cosine", "trainer.max_epochs=20")
    trace = lr_trace(cfg, 20, list(range(20)))
    lr, warm = cfg.optimizer.lr, cfg.scheduler.scheduler.warmup
    start = cfg.scheduler.scheduler.start_factor
    for t, value in trace.items():
        ramp = start + (1 - start) * min(t, warm) / warm
        assert value == pytest.approx(lr * ramp * (1 + math.cos(math.pi * t / 20)) / 2), t
    assert trace[0] == pytest.approx(lr * 0.01)


def test_warmup_multistep_keeps_the_papers_milestones(compose_cfg):
    cfg = compose_cfg("scheduler=warmup_multistep", "optimizer.lr=0.1")
    trace = lr_trace(cfg, 48_001, [0, 200, 400, 31_999, 32_000, 48_000])
    assert trace == pytest.approx({0: 0.01, 200: 0.055, 400: 0.1, 31_999: 0.1, 32_000: 0.01,
                                   48_000: 0.001})


def test_warmup_step_values(compose_cfg):
    cfg = compose_cfg("scheduler=warmup_step", "optimizer.lr=0.1")
    trace = lr_trace(cfg, 61, [0, 1, 5, 29, 30, 60])
    assert trace == pytest.approx({0: 0.001, 1: 0.1 * (0.01 + 0.99 / 5), 5: 0.1, 29: 0.1,
                                   30: 0.01, 60: 0.001})


def test_warmup_cosine_per_optimizer_step(compose_cfg):
    """The recipes' per-step variant: warm-up and cosine counted in optimizer steps."""
    cfg = compose_cfg("scheduler=warmup_cosine", "scheduler.interval=step",
                      "scheduler.scheduler.warmup=500", "scheduler.scheduler.after.T_max=5000")
    assert cfg.scheduler.interval == "step"
    at = [0, 250, 500, 2500, 4999]
    trace = lr_trace(cfg, 5000, at)
    lr = cfg.optimizer.lr
    for t in at:
        ramp = 0.01 + 0.99 * min(t, 500) / 500
        assert trace[t] == pytest.approx(lr * ramp * (1 + math.cos(math.pi * t / 5000)) / 2), t


def test_torchvision_resnet50_v2_recipe(compose_cfg):
    """Each value of torchvision's IMAGENET1K_V2 command (the experiment's header) in the config,
    and its schedule: 5 linear warm-up epochs from 0.01 x 0.5, cosine over 600 epochs."""
    cfg = compose_cfg("experiment=torchvision_resnet50_v2")
    assert cfg.model.depth == 50 and cfg.data.batch_size == 128
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.5, 0.9,
                                                                                     2e-5)
    aug = cfg.augmentation
    assert (aug.random_resized_crop, aug.resize, aug.center_crop) == (176, 232, 224)
    assert (aug.auto_augment, aug.random_erasing, aug.mixup_alpha, aug.cutmix_alpha) == (
        "trivialaugment", 0.1, 0.2, 1.0)
    assert cfg.module.label_smoothing == 0.1
    assert cfg.module.param_groups.weight_decay_bn_bias is False
    # train.py: decay 1 - (1 - 0.99998) x (8 x 128 x 32 / 600), every 32 steps, reset in warm-up
    adjust = 8 * 128 * 32 / 600
    assert cfg.module.ema_decay == pytest.approx(1 - (1 - 0.99998) * adjust, abs=1e-6)
    assert cfg.module.ema_every_n_steps == 32 and cfg.module.ema_warmup_steps == 5 * 1252
    assert cfg.monitor == "val/acc_ema" and cfg.trainer.max_epochs == 600
    trace = lr_trace(cfg, 600, [0, 5, 300, 599])
    assert trace[0] == pytest.approx(0.005)
    assert trace[5] == pytest.approx(0.5 * (1 + math.cos(math.pi * 5 / 600)) / 2)
    assert trace[300] == pytest.approx(0.25)


def test_the_tricks_ablations_baseline_is_he_et_als_recipe_in_epochs(compose_cfg):
    cfg = compose_cfg("experiment=cifar10_tricks_ablation")
    assert cfg.get("trick") is None and cfg.name == "resnet20_baseline_seed42"  # no trick chosen
    assert cfg.trainer.max_epochs == 182
    assert (cfg.optimizer.lr, cfg.optimizer.momentum, cfg.optimizer.weight_decay) == (0.1, 0.9,
                                                                                     1e-4)
    trace = lr_trace(cfg, 182, [90, 91, 135, 136])  # /10 at 50% and 75% of 182 epochs
    assert [trace[t] for t in (90, 91, 135, 136)] == pytest.approx([0.1, 0.01, 0.01, 0.001])
    short = compose_cfg("experiment=cifar10_tricks_ablation", "trainer.max_epochs=16")
    assert list(short.scheduler.scheduler.milestones) == [8, 12]
    every = compose_cfg("experiment=cifar10_tricks_ablation", "trick=all")
    assert every.trick == "all" and every.scheduler.scheduler._target_.endswith("CosineAnnealingLR")
    assert (every.module.label_smoothing, every.augmentation.mixup_alpha,
            every.augmentation.cutmix_alpha, every.augmentation.auto_augment,
            every.module.ema_decay, every.model.zero_init_residual,
            every.module.param_groups.weight_decay_bn_bias) == (
        0.1, 1.0, 1.0, "trivialaugment", 0.999, True, False)
