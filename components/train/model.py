"""The Fashion-MNIST CNN: a VGG-style net with BatchNorm, in two sizes chosen by the device.

Shapes for a batch of N images (uint8 in, logits out), the two presets side by side::

                      ModelConfig.cpu()                       ModelConfig.gpu()
    input             N x 1 x 28 x 28 uint8 (scaled and normalised inside the model)
    stem              4x4/2 conv -> 16 x 14 x 14               3x3 conv -> 32 x 28 x 28
    stage 1           conv, pool -> 24 x 7 x 7                 2 convs, pool -> 32 x 14 x 14
    stage 2           conv, pool -> 64 x 3 x 3                 2 convs, pool -> 64 x 7 x 7
    stage 3           conv       -> 128 x 3 x 3                2 convs, pool -> 128 x 3 x 3
    head              flatten + linear -> 10 logits (keeps where a feature is: collars sit on top)
    cost / image      2.1 M multiply-adds, 0.10 M parameters   36 M multiply-adds, 0.31 M params

Every conv is followed by BatchNorm and ReLU; a stage's pooling comes before its last BatchNorm,
so the memory-bound ops run on 4x fewer values.

Why two sizes: on two CPU cores the budget is one epoch of 60k images in 12 s, which buys
about 2.5 M multiply-adds per image. The small net fits it with a margin for busy machines, but
nets that small stop at 93.5-93.7 % on the real test set. The classic full-resolution VGG-BN
layout (two convs per stage) reaches about 94.9 %: 17 times the compute, seconds per epoch on a
GPU, about 45 s on one bf16 CPU core. So train picks ``gpu()`` on CUDA and
``cpu()`` otherwise; config.json records which (docs/components.md has the measurements).

``Predictor`` wraps a trained net for inference: it averages the logits of each image and its
mirror image (flip test-time augmentation, the training augmentation's twin). It is what train
exports, so score needs no code from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild the net; saved next to the weights as config.json."""

    name: str = "cpu"
    stem: tuple[int, int, int] = (16, 4, 2)  # output channels, kernel, stride
    stages: tuple[tuple[int, int, bool], ...] = ((24, 1, True), (64, 1, True), (128, 1, False))
    num_classes: int = 10
    mean: float = 0.2860  # Fashion-MNIST pixel mean and std (of x / 255), for input scaling
    std: float = 0.3530

    @classmethod
    def cpu(cls) -> ModelConfig:
        """Sized for two CPU cores: one 60k epoch in about 10 s, with a margin under 12 s."""
        return cls()

    @classmethod
    def gpu(cls) -> ModelConfig:
        """Full-resolution VGG-BN: 17 times the compute, for the 94.5 % goal."""
        return cls("gpu", (32, 3, 1), ((32, 2, True), (64, 2, True), (128, 2, True)))

    @classmethod
    def for_device(cls, device: torch.device) -> ModelConfig:
        return cls.gpu() if device.type == "cuda" else cls.cpu()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        stages = tuple((int(w), int(d), bool(p)) for w, d, p in data["stages"])
        return cls(**{**data, "stem": tuple(data["stem"]), "stages": stages})


class ConvBlock(nn.Sequential):
    """conv (no bias: BatchNorm has one) -> optional 2x2 max pool -> BatchNorm -> ReLU."""

    def __init__(
        self, c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1, pool: bool = False
    ) -> None:
        padding = (kernel - stride + 1) // 2  # keeps 28 -> 28 (3x3/1) and 28 -> 14 (4x4/2)
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class FashionNet(nn.Module):
    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        config = config or ModelConfig()
        self.config = config
        width, kernel, stride = config.stem
        blocks: list[nn.Module] = [ConvBlock(1, width, kernel=kernel, stride=stride)]
        side = 28 // stride
        for out, depth, pool in config.stages:
            for i in range(depth):
                blocks.append(ConvBlock(width, out, pool=pool and i == depth - 1))
                width = out
            side = side // 2 if pool else side
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Linear(width * side * side, config.num_classes)
        # (x / 255 - mean) / std as one multiply-add; buffers, so the export bakes them in
        self.scale: torch.Tensor
        self.shift: torch.Tensor
        self.register_buffer("scale", torch.tensor(1.0 / (255.0 * config.std)), persistent=False)
        self.register_buffer("shift", torch.tensor(config.mean / config.std), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images (N x 1 x 28 x 28) -> logits (N x classes)."""
        x = images.to(self.scale.dtype) * self.scale - self.shift
        x = x.contiguous(memory_format=torch.channels_last)
        return self.classifier(self.features(x).flatten(1))


class Predictor(nn.Module):
    """Inference wrapper: logits averaged over each image and its horizontal mirror."""

    def __init__(self, net: FashionNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return (self.net(images) + self.net(images.flip(-1))) * 0.5


# The model sizes train can pick (``--preset``; by default ``ModelConfig.for_device``).
PRESETS = {"cpu": ModelConfig.cpu, "gpu": ModelConfig.gpu}
