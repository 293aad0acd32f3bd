"""The two small networks of Gitari's course report "ResNet and Big Data Computer Vision
Simulations" (Keras; docs/studies.md#sources), in PyTorch.

- `BlockStack`: simulation 4, a stack of identical 64-channel blocks with or without skips.
- `BaselineCNN`: simulation 5, the from-scratch CNN that the pretrained ResNet-50 is compared to.

Keras convs and dense layers have biases by default and Gitari kept them, so these do too.
Both declare their parts (`structure()`, models/structure.py); only `BlockStack` has blocks.
"""

from __future__ import annotations

import torch
from torch import nn

from resnet_exp.models.structure import Block, Structure, equal_stages
from resnet_exp.models.weights import load_weights

BASELINE_WIDTHS = (32, 64, 128, 256)  # BaselineCNN's stages


class StackBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (+ input) -ReLU at constant width."""

    def __init__(self, width: int, residual: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.residual:
            out = out + x
        return self.relu(out)

    def lesioned(self, x: torch.Tensor) -> torch.Tensor:
        """Without the convs: relu of the identity, residual or not (`Block.lesioned`)."""
        return self.relu(x)


class BlockStack(nn.Module):
    """7x7 stem (64) + BN + ReLU, `num_blocks` blocks, global average pool, dense 128 + ReLU,
    dropout 0.5, classifier; `num_blocks` is the depth knob of the residual-vs-standard study.

    Gitari's standard block also moved ReLU before BN; here `residual` is the only difference
    between the two networks, so the study measures the skip connection alone.
    """

    def __init__(
        self,
        num_blocks: int = 10,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 64,
        residual: bool = True,
        weights: str | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 7, padding=3)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.blocks = nn.Sequential(*[StackBlock(width, residual) for _ in range(num_blocks)])
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(width, 128)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(128, num_classes)
        load_weights(self, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu(self.bn1(self.conv1(x))))
        x = self.relu(self.fc1(torch.flatten(self.avgpool(x), 1)))
        return self.fc(self.dropout(x))

    def structure(self) -> Structure:
        # One stage: constant width and resolution throughout. `relu` serves the stem and fc1.
        return Structure(
            stem=("conv1", "bn1", "relu"), stages=(("blocks",),),
            head=("avgpool", "fc1", "dropout", "fc"),
            blocks=tuple(Block(f"blocks.{i}", b.lesioned) for i, b in enumerate(self.blocks)),
        )


class BaselineCNN(nn.Module):
    """Four stages (32/64/128/256) of conv-ReLU-BN-conv-ReLU, 2x2 max-pool, dropout 0.25; global
    average pool, dense 512 + ReLU, dropout 0.5, classifier. 1,305,826 parameters for 2 classes
    (Gitari's Keras summary adds 960 non-trainable BN running statistics)."""

    def __init__(
        self, num_classes: int = 2, in_channels: int = 3, weights: str | None = None
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for width in BASELINE_WIDTHS:
            layers += [
                nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(inplace=True),
                nn.BatchNorm2d(width),
                nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                # ceil_mode: 8x8 digits survive four halvings (8-4-2-1-1); on the even sizes the
                # seed used (224) it equals Keras' floor.
                nn.MaxPool2d(2, ceil_mode=True),
                nn.Dropout(0.25),
            ]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(256, 512)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)
        self.fc = nn.Linear(512, num_classes)
        load_weights(self, weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.fc(self.dropout(self.relu(self.fc1(x))))

    def structure(self) -> Structure:
        """The four stages of `features`, the first conv in the first (no stem), and no blocks:
        Gitari's CNN has none for a lesion to remove."""
        return Structure(
            stages=equal_stages("features", len(self.features), len(BASELINE_WIDTHS)),
            head=("avgpool", "fc1", "relu", "dropout", "fc"),
        )
