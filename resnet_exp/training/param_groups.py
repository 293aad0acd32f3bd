"""The optimizer's parameter groups: which parameters decay, and how fast each learns
(`module.param_groups`, applied to whichever optimizer is chosen).

    python -m resnet_exp module.param_groups.weight_decay_bn_bias=false

A network may declare that some of its submodules learn slower or faster, `model.lr_scales =
{name: scale}` (models/transfer.py declares a fine-tuned backbone's `backbone_lr_scale` so).
Their parameters form groups of their own, whose `lr` is the optimizer's times the scale before
any scheduler starts (the group keeps `lr_scale` for the record).

>>> import functools, torch
>>> net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2), torch.nn.Linear(2, 1))
>>> net.lr_scales = {"0": 0.1}
>>> sgd = functools.partial(torch.optim.SGD, lr=0.5, weight_decay=1e-4)
>>> opt = ParamGroups(weight_decay_bn_bias=False).optimizer(sgd, net)
>>> [(len(g["params"]), g["lr"], g["weight_decay"]) for g in opt.param_groups]
[(1, 0.05, 0.0001), (1, 0.5, 0.0001), (1, 0.05, 0.0), (3, 0.5, 0.0)]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


class ParamGroups:
    """weight_decay_bn_bias: false keeps the normalisation layers' parameters and every bias out
    of weight decay. Decaying BN scales and biases only shrinks them, for no regularisation
    benefit (Goyal et al. 2017, arXiv 1706.02677, sec 5.1; torchvision's `--norm-weight-decay
    0`)."""

    def __init__(self, weight_decay_bn_bias: bool = True) -> None:
        self.weight_decay_bn_bias = weight_decay_bn_bias

    def __call__(self, model: nn.Module) -> list[dict]:
        """The groups of `model`'s trainable parameters; a group with a declared learning-rate
        scale carries it as `lr_scale`."""
        scales = getattr(model, "lr_scales", None) or {}  # most networks declare none
        groups: dict[tuple[bool, float], list[nn.Parameter]] = {}
        seen: set[int] = set()  # a parameter shared by two modules goes in one group
        for module_name, module in model.named_modules():
            for name, p in module.named_parameters(recurse=False):
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                decays = (self.weight_decay_bn_bias
                          or not (isinstance(module, NORMS) or name == "bias"))
                groups.setdefault((decays, _scale_of(module_name, scales)), []).append(p)
        return [{"params": params} | ({} if decays else {"weight_decay": 0.0})
                | ({"lr_scale": scale} if scale != 1.0 else {})
                for (decays, scale), params in sorted(groups.items(),
                                                      key=lambda g: (not g[0][0], g[0][1]))]

    def optimizer(self, make: Callable[[Iterable], torch.optim.Optimizer],
                  model: nn.Module) -> torch.optim.Optimizer:
        """`make` (the optimizer config, a partial) over `model`'s groups, each group's rate
        scaled; before a scheduler is built on it, which records each group's initial rate."""
        optimizer = make(self(model))
        for group in optimizer.param_groups:
            group["lr"] *= group.get("lr_scale", 1.0)
        return optimizer


def _scale_of(module_name: str, scales: dict[str, float]) -> float:
    """The scale of the submodule `module_name`: that of the closest declared module holding it."""
    parts = module_name.split(".") if module_name else []
    for i in range(len(parts), 0, -1):
        scale = scales.get(".".join(parts[:i]))
        if scale is not None:
            return scale
    return 1.0

