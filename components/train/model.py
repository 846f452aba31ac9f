"""The Fashion-MNIST CNN: a small VGG-style net sized for a hard CPU budget.

Shapes for a batch of N images (uint8 in, logits out)::

    N x 1 x 28 x 28   uint8 pixels, scaled and normalised inside the model
    stem  4x4/2 conv          -> 16 x 14 x 14   (a learned, overlapping 2x2 patch embedding)
    conv 3x3 + 2x2 max pool   -> 32 x  7 x  7
    conv 3x3 + 2x2 max pool   -> 64 x  3 x  3
    conv 3x3                  -> 128 x 3 x  3
    flatten + linear          -> 10 logits      (keeps where a feature is: collars sit on top)

Every conv is followed by BatchNorm and ReLU; pooling comes before BatchNorm so the memory-bound
ops run on 4x fewer values. Full-resolution work is what costs on a CPU, so the stem halves the
resolution at once and the widths grow as the maps shrink: about 2.5 M multiply-adds and 0.1 M
parameters per image, which trains one epoch of 60k images in about 10 s on two CPU cores.

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

    widths: tuple[int, int, int, int] = (16, 32, 64, 128)
    num_classes: int = 10
    mean: float = 0.2860  # Fashion-MNIST pixel mean and std (of x / 255), for input scaling
    std: float = 0.3530

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return cls(**{**data, "widths": tuple(data["widths"])})


class ConvBlock(nn.Sequential):
    """conv (no bias: BatchNorm has one) -> optional 2x2 max pool -> BatchNorm -> ReLU."""

    def __init__(
        self, c_in: int, c_out: int, *, kernel: int = 3, stride: int = 1, pool: bool = False
    ) -> None:
        padding = 1 if kernel in (3, 4) else kernel // 2
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)]
        if pool:
            layers.append(nn.MaxPool2d(2))
        layers += [nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
        super().__init__(*layers)


class FashionNet(nn.Module):
    def __init__(self, config: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        c0, c1, c2, c3 = config.widths
        self.config = config
        self.features = nn.Sequential(
            ConvBlock(1, c0, kernel=4, stride=2),  # 28 -> 14
            ConvBlock(c0, c1, pool=True),  # 14 -> 7
            ConvBlock(c1, c2, pool=True),  # 7 -> 3
            ConvBlock(c2, c3),
        )
        self.classifier = nn.Linear(c3 * 3 * 3, config.num_classes)
        # (x / 255 - mean) / std as one multiply-add; buffers, so export bakes them in
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
