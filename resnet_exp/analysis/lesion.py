"""Lesion study (Veit, Wilber, Belongie 2016, arXiv 1605.06431, Fig. 3-5).

Removing a block keeps its shortcut and drops its residual branch: the block then outputs
relu(shortcut(x)), with the block's own shortcut where it has one (identity, option A zero-padding,
a projection) and, for a plain block (no shortcut), the identity subsampled and zero-padded to the
block's output shape: "the same block removed whole". A residual network degrades smoothly as
blocks go, except at the downsampling ones; its plain twin collapses.
"""

from __future__ import annotations

import contextlib
import random
import statistics
from collections.abc import Callable, Iterable

import torch
from torch import nn
from torchvision.models import resnet as tv

from resnet_exp.analysis.landscape import loss_and_accuracy
from resnet_exp.models.resnet import NoShortcut, ZeroPadShortcut
from resnet_exp.models.vgg import VGGBlock

BLOCKS = (tv.BasicBlock, tv.Bottleneck, VGGBlock)


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's residual-style blocks, in forward order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, BLOCKS)]


def _out_shape(block: nn.Module) -> tuple[int, int]:
    """(stride, output channels) of a torchvision block."""
    last_bn = block.bn3 if isinstance(block, tv.Bottleneck) else block.bn2
    return block.conv2.stride[0] if isinstance(block, tv.Bottleneck) else block.conv1.stride[0], \
        last_bn.num_features


def shortcut(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the block outputs without its residual branch."""
    if isinstance(block, VGGBlock):
        return block.act(block.pool(x))
    downsample = block.downsample
    if downsample is None:
        return torch.relu(x)
    if isinstance(downsample, NoShortcut):  # a plain block: option A's identity, shaped to fit
        stride, channels = _out_shape(block)
        return torch.relu(ZeroPadShortcut(channels - x.shape[1], stride)(x))
    return torch.relu(downsample(x))


@contextlib.contextmanager
def removed(model: nn.Module, names: Iterable[str]):
    """Within the block, the named blocks output their shortcut alone."""
    modules = dict(model.named_modules())
    hooks = [modules[name].register_forward_hook(
        lambda block, inputs, output: shortcut(block, inputs[0])) for name in names]
    try:
        yield
    finally:
        for hook in hooks:
            hook.remove()


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return loss_and_accuracy(model, x, y, nn.CrossEntropyLoss())[1]


def evaluations(model: nn.Module, draws: int) -> int:
    """How many times `lesion` evaluates the model: its cost."""
    return 1 + len(blocks(model)) * (1 + draws)


def lesion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, draws: int = 5,
           seed: int = 0, advance: Callable[[], object] = lambda: None) -> dict:
    """Accuracy of the whole model, with each block removed in turn, and with k random blocks
    removed (k = 1..n, `draws` draws each: mean and standard deviation). `advance` is called
    after each evaluation (a progress bar's)."""
    names = [name for name, _ in blocks(model)]
    result = {"accuracy": accuracy(model, x, y), "blocks": [], "k": []}
    advance()
    for name in names:
        with removed(model, [name]):
            result["blocks"].append({"block": name, "accuracy": accuracy(model, x, y)})
        advance()
    rng = random.Random(seed)
    for k in range(1, len(names) + 1):
        accuracies = []
        for _ in range(draws):
            with removed(model, rng.sample(names, k)):
                accuracies.append(accuracy(model, x, y))
            advance()
        result["k"].append({"k": k, "mean": statistics.fmean(accuracies),
                            "std": statistics.pstdev(accuracies)})
    return result
