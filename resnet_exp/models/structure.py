"""What a network says of its own layout, for the code that looks inside it.

Every family in resnet_exp.models answers `model.structure()` with a `Structure`: its stem, its
stages and its head, by module name, and its blocks, each with what it outputs when its residual
branch is removed. The lesion study, CKA, gradient flow and transfer learning read that instead
of testing classes or guessing from names (STYLE.md 13), so a new family is analysed as soon as it
declares itself, as timm's models say theirs through `feature_info` and `group_matcher`.

>>> from resnet_exp.models.resnet import CifarResNet
>>> s = CifarResNet(depth=20).structure()  # He et al. 2016, sec 4.2: 3 stages of n = 3 blocks
>>> s.stages, len(s.blocks), s.blocks[3].name
((('layer1',), ('layer2',), ('layer3',)), 9, 'layer2.0')
>>> s.stem, s.head
(('conv1', 'bn1', 'relu'), ('avgpool', 'fc'))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Block:
    """A residual-style block, plain ones (residual=False) included: its name in
    `model.named_modules()`, and `lesioned(x)`, what it outputs on input x once its residual
    branch is removed (Veit et al. 2016): the activation of its shortcut alone. A plain block's
    shortcut is then the identity shaped to its output as option A shapes it: the block goes
    whole."""

    name: str
    lesioned: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Structure:
    """stem, each stage, head: names for `model.get_submodule`, in forward order; together they
    hold every parameter of the network, each once. A stage's output is that of its last module.
    blocks: in forward order. A network that declares nothing has none of these."""

    stem: tuple[str, ...] = ()
    stages: tuple[tuple[str, ...], ...] = ()
    head: tuple[str, ...] = ()
    blocks: tuple[Block, ...] = ()

    def units(self) -> list[tuple[str, ...]]:
        """The stem (if any), each stage, and the head: the whole network, input side first."""
        return [unit for unit in (self.stem, *self.stages, self.head) if unit]

    def unit_of(self, name: str) -> int | None:
        """The index in `units()` of the unit that holds the module `name`; None if none does."""
        return next((i for i, unit in enumerate(self.units())
                     if any(name == top or name.startswith(f"{top}.") for top in unit)), None)


def structure_of(model: nn.Module) -> Structure:
    """`model.structure()`; a network from elsewhere (torchvision's own, a user's `_target_`,
    a bare `nn.Sequential`) declares nothing: `Structure()`, and the analyses that need its parts
    refuse it."""
    declare = getattr(model, "structure", None)
    return declare() if declare is not None else Structure()


def equal_stages(sequential: str, length: int, stages: int) -> tuple[tuple[str, ...], ...]:
    """The children `<sequential>.0` to `.<length - 1>` of one `nn.Sequential`, cut into `stages`
    equal runs: the stages of a network whose layers were built as a single sequence."""
    names = [f"{sequential}.{i}" for i in range(length)]
    n = length // stages
    return tuple(tuple(names[i:i + n]) for i in range(0, length, n))
