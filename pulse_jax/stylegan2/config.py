"""The StyleGAN2 architecture: :class:`StyleGAN2Config`, the official ``Generator``
constructor arguments, and everything derived from them (widths, W+ rows, noise shapes)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping, Optional

FAMILY = "stylegan2"
ARCHITECTURES = ("orig", "skip", "resnet")


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator: the official constructor arguments.

    Attributes (official name in brackets where it differs):
      img_resolution: output side R, a power of two >= 4.
      z_dim, w_dim: widths of z and of W (and of every W+ row).
      img_channels: image channels (3).
      mapping_layers [mapping_kwargs.num_layers]: dense layers of the mapping network.
      mapping_lr_multiplier [mapping_kwargs.lr_multiplier]: its learning-rate multiplier.
      mapping_layer_features [mapping_kwargs.layer_features]: hidden width (None: w_dim).
      channel_base, channel_max: block widths ``min(channel_base // res, channel_max)``.
      architecture: "skip" (the default), "orig" or "resnet".
      conv_clamp: clamp of every conv output to +-conv_clamp (None: no clamp).
      resample_filter: the 1-D FIR taps of the up-sampling filter (normalized to sum 1).
      num_fp16_res: kept for the record; this port always computes in float32 (the
        official code with ``force_fp32=True``).
    """

    family: ClassVar[str] = FAMILY

    img_resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_layer_features: Optional[int] = None
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"
    conv_clamp: Optional[float] = None
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    num_fp16_res: int = 0

    def __post_init__(self):
        r = self.img_resolution
        if not isinstance(r, int) or r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r!r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base",
                     "channel_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        if self.conv_clamp is not None and not self.conv_clamp >= 0:
            raise ValueError(f"conv_clamp must be None or >= 0, got {self.conv_clamp!r}")
        if self.channel_base // r < 1:
            raise ValueError(f"channel_base {self.channel_base} gives no channels at {r}x{r}")
        object.__setattr__(self, "resample_filter", tuple(self.resample_filter))
        if not self.resample_filter or sum(self.resample_filter) == 0:
            raise ValueError(f"resample_filter must have a non-zero sum, "
                             f"got {self.resample_filter}")

    # Names the rest of pulse-jax reads from any generator config.
    @property
    def resolution(self) -> int:
        return self.img_resolution

    @property
    def dlatent_size(self) -> int:
        return self.w_dim

    @property
    def z_size(self) -> int:
        return self.z_dim

    @property
    def num_channels(self) -> int:
        return self.img_channels

    @property
    def log2_resolution(self) -> int:
        return int(round(math.log2(self.img_resolution)))

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2**r for r in range(2, self.log2_resolution + 1))

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def conv_layers(self) -> tuple[tuple[int, str], ...]:
        """``(block resolution, "conv0" | "conv1")`` of every conv layer, in W+ row order."""
        out = []
        for res in self.block_resolutions:
            if res > 4:
                out.append((res, "conv0"))
            out.append((res, "conv1"))
        return tuple(out)

    @property
    def num_layers(self) -> int:
        """W+ rows (the official ``num_ws``): one per conv layer plus the last ToRGB's."""
        return len(self.conv_layers) + 1

    @property
    def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Per conv layer ``(r, r, 1)`` in the official order (one fewer than W+ rows)."""
        return tuple((res, res, 1) for res, _ in self.conv_layers)

    @property
    def hidden_features(self) -> int:
        return self.w_dim if self.mapping_layer_features is None else self.mapping_layer_features

    def has_torgb(self, res: int) -> bool:
        return self.architecture == "skip" or res == self.img_resolution

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "StyleGAN2Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown StyleGAN2Config fields: {sorted(unknown)}")
        return cls(**dict(d))

    @classmethod
    def from_init_kwargs(cls, kwargs: Mapping[str, Any]) -> "StyleGAN2Config":
        """The config of the official ``Generator(**kwargs)`` (kwargs as pickled by ADA).

        Raises ValueError for conditional generators (``c_dim > 0``: PULSE has no labels) and
        for arguments that change the network in ways this port does not implement.
        """
        kw = dict(kwargs)
        kw.pop("class_name", None)
        mapping = dict(kw.pop("mapping_kwargs", None) or {})
        synthesis = dict(kw.pop("synthesis_kwargs", None) or {})
        if kw.pop("c_dim", 0):
            raise ValueError("conditional generators (c_dim > 0) are not supported: PULSE "
                             "searches without class labels")
        out: dict[str, Any] = {}
        for name in ("z_dim", "w_dim", "img_resolution", "img_channels"):
            if name not in kw:
                raise ValueError(f"Generator arguments lack {name!r}")
            out[name] = kw.pop(name)
        if kw:
            raise ValueError(f"unsupported Generator arguments {sorted(kw)}")
        renames = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier",
                   "layer_features": "mapping_layer_features"}
        for k, v in mapping.items():
            if k in renames:
                out[renames[k]] = v
            elif k == "activation" and v != "lrelu":
                raise ValueError(f"mapping activation {v!r} is not supported (only 'lrelu')")
            elif k == "w_avg_beta" and v is None:
                raise ValueError("mapping networks without w_avg (w_avg_beta=None) are not "
                                 "supported")
            elif k not in ("activation", "w_avg_beta", "embed_features"):
                raise ValueError(f"unsupported mapping argument {k!r}")
        for k, v in synthesis.items():
            if k in ("channel_base", "channel_max", "architecture", "conv_clamp", "num_fp16_res"):
                out[k] = v
            elif k == "resample_filter":
                out[k] = tuple(int(t) for t in v)
            elif k == "use_noise" and v is not True:
                raise ValueError("generators without noise inputs are not supported")
            elif k in ("activation", "kernel_size") and v not in ("lrelu", 3):
                raise ValueError(f"unsupported synthesis {k}={v!r}")
            elif k not in ("fp16_channels_last", "channels_last", "use_noise", "activation",
                           "kernel_size"):
                raise ValueError(f"unsupported synthesis argument {k!r}")
        return cls(**out)
