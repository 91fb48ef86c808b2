"""Networks: the super-resolution generator (SRResNet layout) and the SRGAN discriminator.

The generator follows Ledig et al. (SRGAN) without the upsampling blocks, so its output lies
on the input's pixel grid (``scale=1``, as in Ravì et al.). An optional pixel-shuffle head
(``scale=2`` or ``4``) predicts a finer grid. With ``residual=True`` (the default) the network
predicts a correction that is added to the (upsampled) input, which keeps the untrained model
close to the identity and makes the cycle consistency easy to satisfy from the first step.

Sizes are named by :class:`~napari_cycsr.config.NetworkConfig`; :data:`~napari_cycsr.config.PRESETS`
holds the named sizes (both torch-free, in :mod:`napari_cycsr.config`, re-exported here).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from .config import PRESETS, NetworkConfig, get_preset

__all__ = [
    "PRESETS",
    "Discriminator",
    "Generator",
    "NetworkConfig",
    "SRModel",
    "get_preset",
]


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.PReLU(channels),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _UpsampleBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels * 4, 3, padding=1)
        self.shuffle = nn.PixelShuffle(2)
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.shuffle(self.conv(x)))


class Generator(nn.Module):
    """SRResNet generator: 9x9 conv, residual blocks, long skip, (pixel shuffle), 9x9 conv.

    Input and output are ``(B, 1, H, W)`` float tensors in the model's normalised intensity
    units; the output is ``(B, 1, H*scale, W*scale)``.
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        c = self.config.channels
        self.head = nn.Sequential(nn.Conv2d(1, c, 9, padding=4), nn.PReLU(c))
        self.trunk = nn.Sequential(*[_ResidualBlock(c) for _ in range(self.config.blocks)])
        self.trunk_tail = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        )
        n_up = int(math.log2(self.config.scale))
        self.upsample = nn.Sequential(*[_UpsampleBlock(c) for _ in range(n_up)])
        self.tail = nn.Conv2d(c, 1, 9, padding=4)
        if self.config.residual:
            # start as the identity: the correction branch begins at zero
            nn.init.zeros_(self.tail.weight)
            nn.init.zeros_(self.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.head(x)
        features = features + self.trunk_tail(self.trunk(features))
        out = self.tail(self.upsample(features))
        if self.config.residual:
            base = x
            if self.config.scale > 1:
                base = F.interpolate(
                    x, scale_factor=self.config.scale, mode="bilinear", align_corners=False
                )
            out = out + base
        return out


class Discriminator(nn.Module):
    """SRGAN discriminator; returns one logit per patch (probability = sigmoid(logit)).

    Eight 3x3 conv layers (stride 1, 2 alternating, channels doubling every two layers,
    BatchNorm from the second), LeakyReLU(0.2), then a dense layer and a single output.
    An adaptive pooling to 4x4 before the dense layers lets it score any patch >= 16 px
    (for 64x64 patches it is exactly SRGAN's flatten).
    """

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        c = self.config.disc_channels
        layers: list[nn.Module] = [nn.Conv2d(1, c, 3, padding=1), nn.LeakyReLU(0.2)]
        in_c = c
        plan = [(c, 2), (2 * c, 1), (2 * c, 2), (4 * c, 1), (4 * c, 2), (8 * c, 1), (8 * c, 2)]
        for out_c, stride in plan:
            layers += [
                nn.Conv2d(in_c, out_c, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(out_c),
                nn.LeakyReLU(0.2),
            ]
            in_c = out_c
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_c * 16, self.config.disc_dense),
            nn.LeakyReLU(0.2),
            nn.Linear(self.config.disc_dense, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x))).squeeze(1)


@dataclass
class SRModel:
    """A trained super-resolution model: the generator plus what inference needs.

    Parameters
    ----------
    generator : Generator
        The network (kept in eval mode for inference).
    normalisation : dict
        ``{"low": float, "high": float}``: input intensities are mapped by
        ``(x - low) / (high - low)`` before the network and back after it.
    metadata : dict
        JSON-serialisable facts: training config, seed, iteration, loss history, fibre
        spacing, package version (filled in by :mod:`napari_cycsr.io` on save).
    """

    generator: Generator
    normalisation: dict[str, float] = field(default_factory=lambda: {"low": 0.0, "high": 1.0})
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> NetworkConfig:
        return self.generator.config

    @property
    def scale(self) -> int:
        return self.generator.config.scale

    @classmethod
    def new(cls, config: NetworkConfig | str = "default", **kwargs: Any) -> SRModel:
        """An untrained model of the given config or preset name."""
        if isinstance(config, str):
            config = get_preset(config)
        return cls(Generator(config), **kwargs)

    def normalise(self, x: Any) -> Any:
        low, high = self.normalisation["low"], self.normalisation["high"]
        return (x - low) / (high - low)

    def denormalise(self, x: Any) -> Any:
        low, high = self.normalisation["low"], self.normalisation["high"]
        return x * (high - low) + low
