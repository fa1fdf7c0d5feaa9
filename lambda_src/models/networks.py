"""torch modules the predictors rebuild from their stored weights.

Imported only when a predictor first needs its network, so unpickling a
predictor does not pay for importing torch. Only torch is imported: importing
torchvision (for its ResNet classes) costs about 0.9 s at every cold start, as
much as the first forward pass of ResNet-152, because its package import pulls
in datasets, io and ops. The blocks below keep torchvision's parameter names,
so weights move between the two unchanged (a test pins the equivalence).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


def conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """3x3 convolution with padding, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution, no bias (a BatchNorm follows)."""
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a shortcut; torchvision's `BasicBlock`, same names."""

    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for a (N, C, H, W) batch."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


class Bottleneck(nn.Module):
    """1x1, 3x3 (strided), 1x1 convolutions with a shortcut; torchvision's V1.5 `Bottleneck`."""

    expansion = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for a (N, C, H, W) batch."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: torch.Tensor = self.relu(out + identity)
        return result


# torchvision's ImageNet ResNets: block type and blocks per stage.
IMAGENET_RESNETS: dict[str, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, ...]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}


class ImageNetResNet(nn.Module):
    """torchvision's `ResNet` for 224 px ImageNet inputs, with the same parameter names."""

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: Sequence[int],
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * block.expansion, num_classes)

    def _make_layer(
        self, block: type[BasicBlock] | type[Bottleneck], planes: int, count: int, stride: int = 1
    ) -> nn.Sequential:
        downsample: nn.Module | None = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers: list[nn.Module] = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers.extend(block(self.inplanes, planes) for _ in range(1, count))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (N, 3, H, W) batch."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        logits: torch.Tensor = self.fc(torch.flatten(self.avgpool(x), 1))
        return logits


class CompactResNet(nn.Module):
    """A narrow ResNet of `BasicBlock`s for tiny inputs such as 8x8 digits.

    Unlike the ImageNet ResNets it has a 3x3 stride-1 stem and no max pool, so an
    8x8 input still has 2x2 cells left before global pooling. `widths[i]`
    channels for stage i, `blocks[i]` residual blocks in it; every stage after
    the first halves the resolution.
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
                        conv1x1(channels, width, block_stride), nn.BatchNorm2d(width)
                    )
                layers.append(BasicBlock(channels, width, block_stride, downsample))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        if self.fc.weight.is_meta:
            # Rebuilding for stored weights: initialising meta tensors with normal_ goes
            # through torch._refs, whose first import costs ~0.9 s of the cold start.
            return
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        # Zero the last BN of each residual branch so every block starts as the
        # identity, as torchvision's zero_init_residual does; trains faster.
        for module in self.modules():
            if isinstance(module, BasicBlock) and module.bn2.weight is not None:
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
        name = str(config["name"])
        if name not in IMAGENET_RESNETS:
            raise ValueError(f"unknown torchvision architecture {name!r}")
        block, layers = IMAGENET_RESNETS[name]
        return ImageNetResNet(block, layers, num_classes=int(config["num_classes"]))
    raise ValueError(f"unknown architecture kind {kind!r}")
