"""Every file of the config tree composes, and what it describes can be built (STYLE.md, 10)."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF
from hydra.utils import instantiate
from omegaconf import OmegaConf

from resnet_exp.core import config

# every group but the experiments and searches (tests/test_experiments.py composes those)
GROUPS = [g for g in config.GROUPS if g not in ("experiment", "hparams_search")]
OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]


def test_every_group_has_its_required_choices():
    required = {
        "model": {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet18"},
        "data": {"digits", "cifar10", "cifar100", "imagenet", "imagefolder", "fashion_mnist",
                 "synthetic"},
        "augmentation": {"none", "standard", "imagenet"},
        "optimizer": {"sgd", "adam", "adamw"},
        "scheduler": {"none", "step", "multistep", "cosine"},
        "trainer": {"default", "smoke"},
        "logger": {"tensorboard", "csv"},
        "debug": {"fast_dev_run", "overfit", "profiler", "anomaly"},
    }
    for group, names in required.items():
        present = {p.stem for p in (CONF / group).glob("*.yaml")}
        assert names <= present, f"{group}: missing {names - present}"


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_instantiates(compose_cfg, group, option):
    overrides = [f"{group}={option}"]
    if group != "trainer":
        overrides.append("trainer=smoke")
    if group == "model" and option in {"resnet18", "resnet34", "resnet50", "resnet101",
                                       "resnet152", "plain18", "plain34", "plain_convnet"}:
        overrides.append("data=synthetic")  # keep ImageNet models off the 8x8 digits
    cfg = compose_cfg(*overrides)
    # Every interpolation resolves (the hydra node is Hydra's own, read-only).
    OmegaConf.to_container(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]),
                           resolve=True, throw_on_missing=True)
    node = cfg[group] if group != "debug" else cfg.trainer
    if group in ("logger", "callbacks"):
        built = [instantiate(v) for v in node.values() if v]
        assert built
    elif group == "scheduler":
        sched = instantiate(node, _convert_="all")
        assert sched["interval"] in ("step", "epoch")
        if sched["scheduler"] is not None:
            opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
            assert isinstance(sched["scheduler"](opt), torch.optim.lr_scheduler.LRScheduler)
    elif group == "optimizer":
        opt = instantiate(node)([torch.nn.Parameter(torch.zeros(1))])
        assert isinstance(opt, torch.optim.Optimizer)
    elif group == "trainer" or group == "debug":
        trainer = instantiate(cfg.trainer, logger=False, enable_checkpointing=False)
        assert trainer.max_epochs >= 1 or trainer.fast_dev_run
    elif group == "trick":  # each trick names itself (the ablation's run names)
        assert cfg.trick == option
    else:
        assert instantiate(node) is not None


def test_num_classes_and_input_flow_from_data_to_model(compose_cfg):
    cfg = compose_cfg("data=cifar100", "model=resnet20")
    assert cfg.model.num_classes == 100 and cfg.model.in_channels == 3
    cfg = compose_cfg("data=digits", "model=resnet20")
    assert cfg.model.num_classes == 10 and cfg.model.in_channels == 1
    assert cfg.module.num_classes == 10


def test_run_folder_names(compose_cfg):
    cfg = compose_cfg("model=resnet32", "data=digits")
    assert cfg.name == "resnet32_digits"
    assert cfg.hydra.run.dir.startswith("outputs/runs/")
    assert cfg.hydra.sweep.dir.startswith("outputs/multirun/")
