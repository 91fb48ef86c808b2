"""Settings without torch: network sizes, presets and target domains.

Everything here imports only the standard library, so the command line's help, the widgets'
menus and scripts can list the choices (and their defaults) without loading torch. The
modules that use them (``models``, ``data``, ``training``) re-export them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["PRESETS", "TARGET_KINDS", "NetworkConfig", "get_preset"]

#: Target domains understood by :class:`napari_cycsr.data.TargetSampler`: "natural" (the
#: bundled natural pictures), "images" (your own high-resolution images), "downscaled"
#: (downscaled pCLE frames) and "paired" (the ground truth of simulated data; for ablations).
TARGET_KINDS: tuple[str, ...] = ("natural", "images", "downscaled", "paired")


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the generator and discriminator.

    Parameters
    ----------
    channels : int
        Feature channels of the generator's residual trunk (SRGAN: 64).
    blocks : int
        Number of residual blocks (SRGAN: 16).
    scale : int
        Output grid relative to the input grid: 1 (paper), 2 or 4 (pixel-shuffle head).
    residual : bool
        Predict a correction added to the input (True) or the image itself (False, paper).
    disc_channels : int
        Channels of the discriminator's first layer (SRGAN: 64); doubled at each stage.
    disc_dense : int
        Width of the discriminator's dense layer (SRGAN: 1024).
    """

    channels: int = 64
    blocks: int = 16
    scale: int = 1
    residual: bool = True
    disc_channels: int = 64
    disc_dense: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.scale, bool) or self.scale not in (1, 2, 4):
            raise ValueError(f"scale must be 1, 2 or 4, got {self.scale!r}")
        for name in ("channels", "blocks", "disc_channels", "disc_dense"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetworkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown network config keys: {sorted(unknown)}")
        return cls(**data)


#: Named network sizes. "paper" is SRGAN's size used by Ravì et al.; "default" is the
#: CPU-friendly size chosen by benchmark (see docs/performance.md); "tiny" is for tests.
PRESETS: dict[str, NetworkConfig] = {
    "paper": NetworkConfig(channels=64, blocks=16, disc_channels=64, disc_dense=1024),
    "default": NetworkConfig(channels=32, blocks=6, disc_channels=32, disc_dense=256),
    "tiny": NetworkConfig(channels=8, blocks=2, disc_channels=8, disc_dense=32),
}


def get_preset(name: str, **overrides: Any) -> NetworkConfig:
    """Return the named :class:`NetworkConfig`, with fields optionally overridden."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}") from None
    return dataclasses.replace(base, **overrides) if overrides else base
