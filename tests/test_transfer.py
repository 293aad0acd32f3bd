"""Transfer-learning modes freeze exactly what they say (resnet_exp/models/transfer.py)."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from resnet_exp.core.errors import UserError
from resnet_exp.models.resnet import CifarResNet
from resnet_exp.models.transfer import transfer
from resnet_exp.training.module import Classifier
from resnet_exp.training.param_groups import ParamGroups

# CIFAR ResNet-8: stem (conv1, bn1) + layer1..3 of one basic block each + fc (64 -> classes).
BACKBONE = functools.partial(CifarResNet, depth=8, num_classes=2)
FC_PARAMS = 64 * 2 + 2


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A 'pretrained' 5-class network saved as a state dict, with non-trivial BN statistics."""
    torch.manual_seed(0)
    net = CifarResNet(depth=8, num_classes=5)
    net.train()
    with torch.no_grad():
        net(torch.randn(8, 3, 16, 16) * 2 + 1)
    path = tmp_path_factory.mktemp("transfer") / "pretrained.pt"
    torch.save(net.state_dict(), path)
    return path, {k: v.clone() for k, v in net.state_dict().items()}


def one_training_step(model: nn.Module, lr: float = 0.1) -> torch.optim.Optimizer:
    """What Lightning does for one batch: train mode, forward, backward, optimizer step."""
    module = Classifier(model, 2, optimizer=functools.partial(torch.optim.SGD, lr=lr, momentum=0.9))
    optimizer = module.configure_optimizers()["optimizer"]
    module.train()
    x, y = torch.randn(8, 3, 16, 16) * 3, torch.tensor([0, 1] * 4)
    module.criterion(module(x), y).backward()
    optimizer.step()
    return optimizer


def changed(model: nn.Module, before: dict[str, torch.Tensor]) -> set[str]:
    state = model.state_dict()
    return {k for k, v in before.items()
            if not k.endswith("num_batches_tracked") and not torch.equal(state[k], v)}


def trainable(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_scratch_ignores_the_weights_and_trains_everything(pretrained):
    path, saved = pretrained
    model = transfer(BACKBONE, mode="scratch", weights=str(path))
    assert trainable(model) == sum(p.numel() for p in model.parameters())
    assert not torch.equal(model.conv1.weight, saved["conv1.weight"])


def test_feature_extract_trains_the_new_head_alone(pretrained):
    path, saved = pretrained
    with pytest.warns(UserWarning, match="fc"):  # 5 -> 2 classes: the loader leaves fc fresh
        model = transfer(BACKBONE, mode="feature_extract", weights=str(path))
    assert trainable(model) == FC_PARAMS
    backbone = {k: v for k, v in saved.items() if not k.startswith("fc.")}
    assert not changed(model, backbone)  # loaded exactly
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_training_step(model)
    # Weights AND running statistics of every BN layer are untouched; only the head moved.
    assert changed(model, before) == {"fc.weight", "fc.bias"}
    assert all(not m.training for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_frozen_batch_norm_normalises_with_the_pretrained_statistics(pretrained):
    path, _ = pretrained
    model = transfer(BACKBONE, mode="feature_extract", weights=str(path))
    x = torch.randn(4, 3, 16, 16) * 3
    with torch.no_grad():
        model.eval()
        expected = model(x)
        model.train()  # as Lightning does at every training epoch
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_finetune_trains_the_last_stages_at_a_lower_learning_rate(pretrained):
    path, _ = pretrained
    model = transfer(BACKBONE, mode="finetune", weights=str(path), trainable_stages=1,
                     backbone_lr_scale=0.1)
    layer3 = sum(p.numel() for p in model.layer3.parameters())
    assert trainable(model) == layer3 + FC_PARAMS
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimizer = one_training_step(model, lr=0.1)
    moved = changed(model, before)
    assert {k.split(".")[0] for k in moved} == {"layer3", "fc"}
    # layer3's BN trains: its running statistics follow the new data
    assert "layer3.0.bn1.running_mean" in moved
    lrs = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    assert {round(lrs[id(p)], 9) for p in model.layer3.parameters()} == {0.01}
    assert {lrs[id(p)] for p in model.fc.parameters()} == {0.1}


def test_finetune_groups_combine_with_the_weight_decay_split_and_a_scheduler(pretrained):
    path, _ = pretrained
    model = transfer(BACKBONE, mode="finetune", weights=str(path), trainable_stages=2,
                     backbone_lr_scale=0.25)
    module = Classifier(
        model, 2, optimizer=functools.partial(torch.optim.SGD, lr=0.2, weight_decay=1e-4),
        scheduler={"scheduler": functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1,
                                                  gamma=0.5), "interval": "epoch"},
        param_groups=ParamGroups(weight_decay_bn_bias=False),
    )
    config = module.configure_optimizers()
    groups = config["optimizer"].param_groups
    # decay / no decay, each split into backbone (x0.25) and head (x1)
    assert sorted((g["lr"], g["weight_decay"]) for g in groups) == [
        (pytest.approx(0.05), 0.0), (pytest.approx(0.05), 1e-4), (0.2, 0.0), (0.2, 1e-4)]
    assert sum(len(g["params"]) for g in groups) == sum(
        1 for p in model.parameters() if p.requires_grad)
    config["lr_scheduler"]["scheduler"].step()
    assert sorted(g["lr"] for g in groups) == pytest.approx([0.025, 0.025, 0.1, 0.1])


def test_the_head_is_new_even_when_the_class_count_matches(pretrained):
    path, saved = pretrained
    model = transfer(functools.partial(CifarResNet, depth=8, num_classes=5),
                     mode="feature_extract", weights=str(path))
    assert torch.equal(model.conv1.weight, saved["conv1.weight"])
    assert not torch.equal(model.fc.weight, saved["fc.weight"])


def test_finetuning_every_stage_unfreezes_the_stem(pretrained):
    path, _ = pretrained
    model = transfer(BACKBONE, mode="finetune", weights=str(path), trainable_stages=4)
    assert trainable(model) == sum(p.numel() for p in model.parameters())
    assert model.lr_scales == dict.fromkeys(
        ["conv1", "bn1", "relu", "layer1", "layer2", "layer3"], 0.1)
    assert not any(hasattr(p, "lr_scale") for p in model.parameters())  # nothing on the tensors


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "linear_probe"}, "choose one of scratch"),
        ({"mode": "feature_extract", "weights": None}, "needs pretrained weights"),
        ({"mode": "finetune", "trainable_stages": 0}, "has 4 stages"),
        ({"mode": "finetune", "trainable_stages": 5}, "has 4 stages"),
    ],
)
def test_mistakes_are_user_errors(pretrained, kwargs, message):
    kwargs.setdefault("weights", str(pretrained[0]))
    with pytest.raises(UserError, match=message):
        transfer(BACKBONE, **kwargs)


def test_a_backbone_that_declares_no_stages_is_refused():
    import torchvision

    with pytest.raises(UserError, match="declares no stages"):  # torchvision's own: no structure()
        transfer(torchvision.models.resnet18, mode="scratch")
