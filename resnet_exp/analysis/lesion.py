"""Lesion study (Veit, Wilber, Belongie 2016, arXiv 1605.06431, Fig. 3-5).

Removing a block keeps its shortcut and drops its residual branch: the block then outputs
relu(shortcut(x)), with the block's own shortcut where it has one (identity, option A zero-padding,
a projection) and, for a plain block (no shortcut), the identity subsampled and zero-padded to the
block's output shape: "the same block removed whole". A residual network degrades smoothly as
blocks go, except at the downsampling ones; its plain twin collapses.

The blocks, and what each outputs once removed, are those the model declares (`structure()`,
resnet_exp/models/structure.py); a model that declares none has nothing to lesion.
"""

from __future__ import annotations

import contextlib
import random
import statistics
from collections.abc import Callable, Iterable

import torch
from torch import nn

from resnet_exp.analysis.base import Analysis
from resnet_exp.analysis.landscape import loss_and_accuracy
from resnet_exp.models.structure import Block, structure_of


def blocks(model: nn.Module) -> tuple[Block, ...]:
    """The model's residual-style blocks, plain ones included, in forward order."""
    return structure_of(model).blocks


@contextlib.contextmanager
def removed(model: nn.Module, names: Iterable[str]):
    """Within the block, the named blocks output their shortcut alone."""
    lesioned = {block.name: block.lesioned for block in blocks(model)}
    hooks = [model.get_submodule(name).register_forward_hook(
        lambda block, inputs, output, shortcut=lesioned[name]: shortcut(inputs[0]))
        for name in names]
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
    names = [block.name for block in blocks(model)]
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


class Lesion(Analysis):
    """`analysis=lesion`: the lesion study on the run's best weights; `draws` per k."""

    def __init__(self, draws: int = 5) -> None:
        self.draws = draws

    def missing(self, model: nn.Module) -> str | None:
        return None if blocks(model) else "residual-style blocks to remove"

    def cost(self, model: nn.Module, others: int = 0) -> int:
        return evaluations(model, self.draws)

    def run(self, model, x, y, others=(), advance=lambda: None) -> dict:
        result = lesion(model, x, y, draws=self.draws, advance=advance)
        single = [b["accuracy"] for b in result["blocks"]]
        return result | {"summary": {"accuracy": result["accuracy"],
                                     "lesion_one_block_mean": sum(single) / len(single),
                                     "lesion_one_block_min": min(single)}}

    def figure(self, result: dict):
        from resnet_exp.core import figures

        fig, axes = figures.new_figure(10, 3.5, ncols=2)
        a, b = axes[0]
        a.plot([r["accuracy"] for r in result["blocks"]], "o-")
        a.axhline(result["accuracy"], color="gray", linestyle="--")
        a.set(xlabel="block removed", ylabel="test accuracy")
        b.errorbar([r["k"] for r in result["k"]], [r["mean"] for r in result["k"]],
                   [r["std"] for r in result["k"]], marker="o")
        b.set(xlabel="blocks removed at random (k)", ylabel="test accuracy")
        return fig
