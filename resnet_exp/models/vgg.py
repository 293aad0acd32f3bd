"""The VGG of Arenas López's depth study ("Optimizing Convolutional Neural Networks with Residual
Blocks and Batch Normalization", CIFAR-100; docs/studies.md#sources), built like the Edinburgh
MLP-course `ConvolutionalNetwork` it used.

Not torchvision's VGG: an entry conv, then S stages each of B processing blocks
(conv3x3-act-conv3x3-act) and one reduction block (conv3x3-act-avgpool2-conv3x3-act), global
average pool, linear; 32 filters throughout, LeakyReLU. Counting the entry conv, the 2 convs of
each block and the classifier, depth = 2 + S * (2B + 2):

    depth = 8 + 6B with S = 3:  VGG08 is B = 0, VGG38 is B = 5, VGG68 is B = 10

so `model.depth=8,38,68` sweeps the study's depths. Published parameter counts for 100 classes:
59,716 (VGG08), 336,196 (VGG38), 338,500 (VGG38 with BN), 616,900 (VGG68 with BN).
`structure()` declares the entry conv as the stem, each stage's B + 1 blocks, and the head.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_exp.core.errors import UserError
from resnet_exp.models.structure import Block, Structure, equal_stages
from resnet_exp.models.weights import load_weights


class VGGBlock(nn.Module):
    """A processing block, or with `reduction` a reduction block (2x2 average pool mid-block).

    `residual` adds the input (average-pooled in a reduction block) before the last activation.
    """

    def __init__(self, width: int, reduction: bool, batch_norm: bool, residual: bool,
                 bias: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        self.bn1 = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.pool = nn.AvgPool2d(2) if reduction else nn.Identity()
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=bias)
        self.bn2 = nn.BatchNorm2d(width) if batch_norm else nn.Identity()
        self.act = nn.LeakyReLU()
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(self.pool(out)))
        if self.residual:
            out = out + self.pool(x)
        return self.act(out)

    def lesioned(self, x: torch.Tensor) -> torch.Tensor:
        """Without the convs: the shortcut alone, which is the pooled identity here whether
        `residual` or not, so a plain block goes whole (`Block.lesioned`)."""
        return self.act(self.pool(x))


class VGG(nn.Module):
    """`depth` picks blocks per stage (see the module docstring); `batch_norm` puts BN after every
    block conv, `residual` adds the identity shortcut to every block."""

    def __init__(
        self,
        depth: int = 38,
        num_classes: int = 100,
        in_channels: int = 3,
        num_stages: int = 3,
        width: int = 32,
        batch_norm: bool = False,
        residual: bool = False,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        per_stage = (depth - 2) / num_stages
        if per_stage < 2 or per_stage % 2:
            raise UserError(
                f"model.depth={depth}: with {num_stages} stages the depth is "
                f"{2 + 2 * num_stages} + {2 * num_stages}B for B blocks per stage (e.g. 8, 38, 68 "
                "with 3 stages); pick such a depth."
            )
        blocks_per_stage = int(per_stage) // 2 - 1
        # The course's entry block always has BN and no conv bias, so it is in the counts above.
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act = nn.LeakyReLU()
        blocks = []
        for _ in range(num_stages):
            # As in the course code: processing convs without bias, reduction convs with one;
            # the published counts (e.g. 59,716 for VGG08) hold only this way.
            blocks += [VGGBlock(width, False, batch_norm, residual, bias=False)
                       for _ in range(blocks_per_stage)]
            blocks.append(VGGBlock(width, True, batch_norm, residual, bias=True))
        self.features = nn.Sequential(*blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(width, num_classes)
        self.num_stages = num_stages
        load_weights(self, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(self.act(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))

    def structure(self) -> Structure:
        stages = equal_stages("features", len(self.features), self.num_stages)
        return Structure(
            stem=("conv1", "bn1", "act"), stages=stages, head=("avgpool", "fc"),
            blocks=tuple(Block(f"features.{i}", block.lesioned)
                         for i, block in enumerate(self.features)),
        )
