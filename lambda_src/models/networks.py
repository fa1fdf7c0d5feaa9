"""torch modules the predictors rebuild from their stored weights.

Imported only when a predictor first needs its network, so unpickling a
predictor does not pay for importing torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models import resnet


class CompactResNet(nn.Module):
    """A narrow ResNet of torchvision `BasicBlock`s for tiny inputs such as 8x8 digits.

    Unlike torchvision's ImageNet ResNets it has a 3x3 stride-1 stem and no max
    pool, so an 8x8 input still has 2x2 cells left before global pooling.
    `widths[i]` channels for stage i, `blocks[i]` residual blocks in it; every
    stage after the first halves the resolution.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        blocks: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if len(widths) != len(blocks) or not widths:
            raise ValueError("widths and blocks must be non-empty and of equal length")
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            stride = 1 if index == 0 else 2
            layers: list[nn.Module] = []
            for block_index in range(count):
                block_stride = stride if block_index == 0 else 1
                downsample: nn.Module | None = None
                if block_stride != 1 or channels != width:
                    downsample = nn.Sequential(
                        resnet.conv1x1(channels, width, block_stride), nn.BatchNorm2d(width)
                    )
                layers.append(resnet.BasicBlock(channels, width, block_stride, downsample))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last BN of each residual branch so every block starts as the
        # identity, as torchvision's zero_init_residual does; trains faster.
        for module in self.modules():
            if isinstance(module, resnet.BasicBlock) and module.bn2.weight is not None:
                nn.init.zeros_(module.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (N, C, H, W) batch."""
        features = self.pool(self.stages(self.stem(x)))
        logits: torch.Tensor = self.fc(torch.flatten(features, 1))
        return logits


def build_network(config: dict[str, Any]) -> nn.Module:
    """Instantiate the network an architecture config describes (weights left at init)."""
    kind = config["kind"]
    if kind == "compact_resnet":
        return CompactResNet(
            in_channels=int(config["in_channels"]),
            num_classes=int(config["num_classes"]),
            widths=tuple(int(w) for w in config["widths"]),
            blocks=tuple(int(b) for b in config["blocks"]),
        )
    if kind == "torchvision":
        builder = getattr(resnet, str(config["name"]))
        module: nn.Module = builder(weights=None, num_classes=int(config["num_classes"]))
        return module
    raise ValueError(f"unknown architecture kind {kind!r}")
