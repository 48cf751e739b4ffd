"""The StyleGAN v1 architecture: a frozen :class:`GeneratorConfig` from which the layer count,
every block's width and the noise shapes are derived."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping

FAMILY = "stylegan"


@dataclasses.dataclass(frozen=True)
class GeneratorConfig:
    """Architecture of a StyleGAN v1 generator (the reference's ``G_synthesis`` defaults).

    Attributes:
      resolution: output side R, a power of two in [8, 1024].
      fmap_base, fmap_decay, fmap_max: block widths, ``nf(s) = min(int(fmap_base /
        2**(s * fmap_decay)), fmap_max)``; the block at resolution ``2**r`` has ``nf(r - 1)``.
      dlatent_size: width D of the W / W+ latents (and of z for the mapping network).
      num_channels: image channels (3).
      mapping_layers: dense layers of the mapping network.
      mapping_lrmul: learning-rate multiplier of the mapping's equalized dense layers.
      instance_norm_eps: 1e-5 as in the PyTorch reference (NVIDIA's TF original uses 1e-8;
        PULSE's published numbers come from 1e-5).
      fused_min_resolution: blocks whose output side is at least this use the reference's
        fused (transposed-conv) upsampling, which equals nearest-up + a spatially flipped
        3x3 kernel.
    """

    family: ClassVar[str] = FAMILY

    resolution: int = 1024
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    dlatent_size: int = 512
    num_channels: int = 3
    mapping_layers: int = 8
    mapping_lrmul: float = 0.01
    instance_norm_eps: float = 1e-5
    fused_min_resolution: int = 128

    def __post_init__(self):
        r = self.resolution
        if not isinstance(r, int) or r < 8 or r > 1024 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two in [8, 1024], got {r!r}")
        for name in ("fmap_base", "fmap_max", "dlatent_size", "num_channels", "mapping_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.fmap_decay < 0:
            raise ValueError(f"fmap_decay must be >= 0, got {self.fmap_decay!r}")

    @property
    def log2_resolution(self) -> int:
        return int(round(math.log2(self.resolution)))

    @property
    def z_size(self) -> int:
        """Width of the mapping network's input z (that of W in StyleGAN v1)."""
        return self.dlatent_size

    @property
    def num_layers(self) -> int:
        """Number of style (W+) rows and noise maps: 2 per block, 18 at 1024."""
        return 2 * self.log2_resolution - 2

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        """Output side of every block, from 4 to ``resolution``."""
        return tuple(2**r for r in range(2, self.log2_resolution + 1))

    def nf(self, stage: int) -> int:
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    def width(self, res: int) -> int:
        """Channels of the block whose output side is ``res``."""
        return self.nf(int(round(math.log2(res))) - 1)

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.width(r) for r in self.block_resolutions)

    @property
    def layer_resolutions(self) -> tuple[int, ...]:
        """Side of the feature map that style/noise layer i acts on."""
        return tuple(2 ** (i // 2 + 2) for i in range(self.num_layers))

    @property
    def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Per-layer noise shapes ``(r, r, 1)`` (add a leading batch axis)."""
        return tuple((r, r, 1) for r in self.layer_resolutions)

    def is_fused(self, res: int) -> bool:
        return res >= self.fused_min_resolution

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GeneratorConfig fields: {sorted(unknown)}")
        return cls(**dict(d))


#: The same class as :class:`GeneratorConfig`, by a name that says which family it configures
#: (``GeneratorConfig`` stays the public name: ``pulse_jax.GeneratorConfig``).
StyleGANConfig = GeneratorConfig
