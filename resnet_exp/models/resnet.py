"""Residual networks and their plain counterparts (He et al. 2016, arXiv 1512.03385).

- `CifarResNet`: the CIFAR-10 family of section 4.2 (depth 6n+2, widths 16/32/64), and, with a
  bottleneck block, wider stem and conv biases, the "ResNet-56" of Khalaf's "Building and
  Training a ResNet-56 Model on the CIFAR-10 Dataset" (docs/studies.md#sources).
- `resnet`: torchvision's ImageNet ResNets (Table 1) with torchvision's module names, so its
  weights load unchanged; `cifar_stem` gives the ResNet-18 of the Cutout paper.

Both build on torchvision's `BasicBlock`/`Bottleneck`, which add `downsample(x)` to the residual
branch when `downsample` is set. The ablations only choose that module: zero-padding (option A), a
1x1 projection (option B), or `NoShortcut`, which adds nothing and so makes a block plain.
Both declare their stem, stages (`layer1`, ...), head and blocks (`structure()`,
models/structure.py).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet as tv

from resnet_exp.core.errors import UserError
from resnet_exp.models.structure import Block, Structure
from resnet_exp.models.weights import load_weights

# He et al. 2016, Table 1: block type and blocks per stage; the torchvision weights of each depth.
IMAGENET_DEPTHS = {
    18: (tv.BasicBlock, [2, 2, 2, 2], tv.ResNet18_Weights),
    34: (tv.BasicBlock, [3, 4, 6, 3], tv.ResNet34_Weights),
    50: (tv.Bottleneck, [3, 4, 6, 3], tv.ResNet50_Weights),
    101: (tv.Bottleneck, [3, 4, 23, 3], tv.ResNet101_Weights),
    152: (tv.Bottleneck, [3, 8, 36, 3], tv.ResNet152_Weights),
}

# Convs per block; depth = 3 stages x n blocks x convs + stem + classifier, so 6n+2 for basic
# blocks (He et al. 2016, sec 4.2: 20, 32, 44, 56, 110, 1202 in Table 6) and 9n+2 for
# bottlenecks (He et al. 2016b, arXiv 1603.05027: ResNet-164 = 9*18+2).
CIFAR_BLOCKS = {"basic": (tv.BasicBlock, 2), "bottleneck": (tv.Bottleneck, 3)}


class NoShortcut(nn.Module):
    """The shortcut of a plain block: adds zero, so nothing of the input bypasses the convs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros(())


class ZeroPadShortcut(nn.Module):
    """Option A (He et al. 2016, sec 3.3): identity subsampled by the stride, new channels zero."""

    def __init__(self, extra_channels: int, stride: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x[:, :, :: self.stride, :: self.stride]
        return F.pad(identity, (0, 0, 0, 0, 0, self.extra_channels))

    def extra_repr(self) -> str:
        return f"extra_channels={self.extra_channels}, stride={self.stride}"


def make_shortcut(kind: str, residual: bool, inplanes: int, outplanes: int,
                  stride: int) -> nn.Module | None:
    """The `downsample` a torchvision block gets; None is torchvision's plain identity."""
    if not residual:
        return NoShortcut()
    if stride == 1 and inplanes == outplanes:
        return None
    if kind == "A":
        return ZeroPadShortcut(outplanes - inplanes, stride)
    return nn.Sequential(
        nn.Conv2d(inplanes, outplanes, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(outplanes),
    )


def _lesioned(block: tv.BasicBlock | tv.Bottleneck) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the block outputs without its residual branch (`Block.lesioned`): relu of its
    shortcut, which for a plain block is option A's at the block's stride and output width."""
    shortcut = block.downsample if block.downsample is not None else nn.Identity()
    if isinstance(shortcut, NoShortcut):
        out_channels = getattr(block, "bn3", block.bn2).num_features  # a Bottleneck's is bn3
        shortcut = ZeroPadShortcut(out_channels - block.conv1.in_channels, block.stride)
    return lambda x: torch.relu(shortcut(x))


def _structure(model: nn.Module, stem: tuple[str, ...], stages: tuple[str, ...]) -> Structure:
    """A ResNet's: `stem`, then one torchvision block sequence per stage, then pool and `fc`."""
    blocks = tuple(Block(f"{stage}.{i}", _lesioned(block))
                   for stage in stages for i, block in enumerate(model.get_submodule(stage)))
    return Structure(stem=stem, stages=tuple((stage,) for stage in stages),
                     head=("avgpool", "fc"), blocks=blocks)


def _init(model: nn.Module) -> None:
    # The initialisation torchvision's ResNet uses, He et al. 2015 (arXiv 1502.01852) for convs.
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _zero_init_residual(model: nn.Module, residual: bool) -> None:
    """Zero the scale (gamma) of the last BN of every residual branch: each block starts as its
    shortcut alone, so a deep net starts as a shallow one (Goyal et al. 2017, arXiv 1706.02677,
    sec 5.1; torchvision's `zero_init_residual`, same blocks)."""
    if not residual:
        raise UserError("model.zero_init_residual=true with model.residual=false would zero every "
                        "block's output: a plain net has no shortcut to start from. Use it with "
                        "residual nets only.")
    for m in model.modules():
        if isinstance(m, tv.Bottleneck):
            nn.init.zeros_(m.bn3.weight)
        elif isinstance(m, tv.BasicBlock):
            nn.init.zeros_(m.bn2.weight)


def _add_conv_biases(module: nn.Module) -> None:
    """Give every conv a bias (torchvision's blocks have none): Khalaf's net has them."""
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and child.bias is None:
            setattr(module, name, nn.Conv2d(
                child.in_channels, child.out_channels, child.kernel_size, child.stride,
                child.padding, child.dilation, child.groups, bias=True))
        else:
            _add_conv_biases(child)


class CifarResNet(nn.Module):
    """3x3 stem, three stages of widths 16/32/64 at strides 1/2/2, global average pool, linear.

    `shortcut`: "A" zero-pads the identity where the shape changes (the paper's CIFAR choice),
    "B" projects it with a 1x1 conv + BN there. `residual=False` is the paper's plain net of the
    same depth. `block`, `stem_width` and `conv_bias` exist for Khalaf's network
    (`conf/model/resnet56_bottleneck.yaml`). `zero_init_residual`: see `_zero_init_residual`.
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: str = "A",
        residual: bool = True,
        block: str = "basic",
        stem_width: int = 16,
        conv_bias: bool = False,
        zero_init_residual: bool = False,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        if block not in CIFAR_BLOCKS:
            raise UserError(f"model.block={block!r}: choose one of {', '.join(CIFAR_BLOCKS)}.")
        if shortcut not in ("A", "B"):
            raise UserError(f"model.shortcut={shortcut!r}: choose A (zero-padding identity, He et "
                            "al. 2016's CIFAR nets) or B (1x1 projection where the shape changes).")
        block_type, convs = CIFAR_BLOCKS[block]
        if depth < 3 * convs + 2 or (depth - 2) % (3 * convs):
            raise UserError(f"model.depth={depth}: a CIFAR ResNet with {block} blocks has depth "
                            f"{3 * convs}n+2 (e.g. {3 * convs + 2}, {9 * convs + 2}, "
                            f"{27 * convs + 2}); pick such a depth.")
        blocks_per_stage = (depth - 2) // (3 * convs)

        self.conv1 = nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        inplanes = stem_width
        stages = []
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            layers = []
            for i in range(blocks_per_stage):
                s = stride if i == 0 else 1
                outplanes = planes * block_type.expansion
                downsample = make_shortcut(shortcut, residual, inplanes, outplanes, s)
                layers.append(block_type(inplanes, planes, s, downsample))
                inplanes = outplanes
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        if conv_bias:
            _add_conv_biases(self)
        _init(self)
        if zero_init_residual:
            _zero_init_residual(self, residual)
        load_weights(self, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def structure(self) -> Structure:
        return _structure(self, ("conv1", "bn1", "relu"), ("layer1", "layer2", "layer3"))


class ResNet(tv.ResNet):
    """torchvision's ResNet, with nothing added but its `structure()`: the same modules, forward
    and state-dict keys, so torchvision's weights load unchanged."""

    def structure(self) -> Structure:
        return _structure(self, ("conv1", "bn1", "relu", "maxpool"),
                          ("layer1", "layer2", "layer3", "layer4"))


def resnet(
    depth: int = 18,
    num_classes: int = 1000,
    in_channels: int = 3,
    residual: bool = True,
    cifar_stem: bool = False,
    zero_init_residual: bool = False,
    weights: str | None = None,
) -> ResNet:
    """torchvision's ResNet-`depth`: same modules and state-dict keys, so its weights load as is.

    `residual=False` gives He et al.'s plain-18/34 (Table 2): every block loses its shortcut,
    including the projections, so the plain net has no shortcut parameters at all.
    `cifar_stem=True` replaces the 7x7/2 conv and max-pool by a 3x3/1 conv: the ResNet-18 of the
    Cutout paper (DeVries & Taylor 2017, from kuangliu/pytorch-cifar), which keeps 32x32 inputs at
    32x32 into layer1 instead of 8x8.
    """
    if depth not in IMAGENET_DEPTHS:
        raise UserError(f"model.depth={depth}: ImageNet ResNets exist for depths "
                        f"{', '.join(map(str, IMAGENET_DEPTHS))} (He et al. 2016, Table 1).")
    block, layers, torchvision_weights = IMAGENET_DEPTHS[depth]
    net = ResNet(block, layers, num_classes=num_classes)
    if cifar_stem or in_channels != 3:
        size, stride = (3, 1) if cifar_stem else (7, 2)
        net.conv1 = nn.Conv2d(in_channels, 64, size, stride, padding=size // 2, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    if cifar_stem:
        net.maxpool = nn.Identity()
    if not residual:
        for stage in (net.layer1, net.layer2, net.layer3, net.layer4):
            for b in stage:
                b.downsample = NoShortcut()
    if zero_init_residual:
        _zero_init_residual(net, residual)
    # torchvision publishes residual nets only; a plain one takes checkpoint paths.
    load_weights(net, weights, torchvision_weights if residual else None)
    return net
