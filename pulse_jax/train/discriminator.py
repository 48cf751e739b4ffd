"""The discriminator for training our StyleGAN v1 generator, in Flax, NHWC.

Two architectures, both with the equalized-learning-rate layers of :mod:`pulse_jax.stylegan`
(raw parameters, runtime multipliers) and widths from the same formula
``nf(s) = min(int(fmap_base / 2**(s * fmap_decay)), fmap_max)``:

``"orig"`` (StyleGAN v1's ``D_basic``, the default)::

    fromrgb: 1x1 conv to nf(log2 R - 1), LeakyReLU(0.2)
    for each side r = R, R/2, ..., 8 (stage s = log2 r):
        conv 3x3 -> nf(s - 1), LeakyReLU
        blur [1,2,1]^2, conv 3x3 -> nf(s - 2), 2x2 average pool, LeakyReLU
    4x4: minibatch stddev, conv 3x3 -> nf(1), LeakyReLU, dense -> nf(0), LeakyReLU,
         dense -> 1 (gain 1): one logit per image

``"resnet"`` (StyleGAN2's residual D): the same blocks, each with a skip branch
``1x1 conv (no bias, gain 1) of avgpool2(x)`` added and scaled by ``1/sqrt(2)``.

The x2 downsampling is always "conv then 2x2 average": StyleGAN v1's fused
(strided 4x4) variant at >= 128 computes the same function, only faster.

Minibatch stddev groups *contiguous* samples (StyleGAN's TF code groups samples
``i, i + N/G, ...``); the statistics are the same for a shuffled batch, and contiguous groups
stay on one device when the batch is sharded over a mesh. The group size is the largest
divisor of the batch that is ``<= mbstd_group_size``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from pulse_jax.stylegan.convs import blur
from pulse_jax.stylegan import EqualizedConv, EqualizedDense, GeneratorConfig, lrelu

ARCHITECTURES = ("orig", "resnet")


@dataclasses.dataclass(frozen=True)
class DiscriminatorConfig:
    """Architecture of the discriminator.

    Attributes:
      resolution: input side R (a power of two >= 8), the generator's resolution.
      fmap_base, fmap_decay, fmap_max: widths, as :class:`GeneratorConfig`'s.
      num_channels: image channels (3).
      architecture: "orig" (StyleGAN v1) or "resnet" (StyleGAN2's residual D).
      mbstd_group_size: samples per minibatch-stddev group (4 as StyleGAN); 0 or 1 = off.
      mbstd_num_features: stddev feature maps appended (1 as StyleGAN).
    """

    resolution: int = 1024
    fmap_base: int = 8192
    fmap_decay: float = 1.0
    fmap_max: int = 512
    num_channels: int = 3
    architecture: str = "orig"
    mbstd_group_size: int = 4
    mbstd_num_features: int = 1

    def __post_init__(self):
        r = self.resolution
        if not isinstance(r, int) or r < 8 or r & (r - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {r!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        for name in ("fmap_base", "fmap_max", "num_channels", "mbstd_num_features"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.mbstd_group_size < 0:
            raise ValueError(f"mbstd_group_size must be >= 0, got {self.mbstd_group_size}")

    @classmethod
    def from_generator(cls, g: GeneratorConfig, **overrides: Any) -> "DiscriminatorConfig":
        """The D matching generator ``g`` (same resolution, channels and width formula)."""
        d = dict(resolution=g.resolution, fmap_base=g.fmap_base, fmap_decay=g.fmap_decay,
                 fmap_max=g.fmap_max, num_channels=g.num_channels)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**d)

    @property
    def log2_resolution(self) -> int:
        return int(round(math.log2(self.resolution)))

    def nf(self, stage: int) -> int:
        return min(int(self.fmap_base / (2.0 ** (stage * self.fmap_decay))), self.fmap_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "DiscriminatorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown DiscriminatorConfig fields: {sorted(unknown)}")
        return cls(**dict(d))


def avg_pool2(x: jax.Array) -> jax.Array:
    """``[B, H, W, C] -> [B, H/2, W/2, C]``, the mean of each 2x2 block."""
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def mbstd_group(batch: int, group_size: int) -> int:
    """The group size actually used: the largest divisor of ``batch`` <= ``group_size``."""
    g = max(1, min(group_size, batch))
    while batch % g:
        g -= 1
    return g


def minibatch_stddev(x: jax.Array, group_size: int, num_features: int = 1) -> jax.Array:
    """Appends ``num_features`` maps: the mean over (H, W, channels) of the per-group std.

    x: ``[N, H, W, C]``; returns ``[N, H, W, C + num_features]``. Groups are contiguous
    samples; the statistic is computed in float32.
    """
    n, h, w, c = x.shape
    g = mbstd_group(n, group_size)
    f = num_features
    if c % f:
        raise ValueError(f"{c} channels do not split into {f} stddev features")
    y = x.astype(jnp.float32).reshape(n // g, g, h, w, f, c // f)
    y = y - jnp.mean(y, axis=1, keepdims=True)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=1) + 1e-8)      # [M, H, W, F, C/F]
    y = jnp.mean(y, axis=(1, 2, 4))                               # [M, F]
    y = jnp.broadcast_to(y[:, None, None, None, :], (n // g, g, h, w, f)).reshape(n, h, w, f)
    return jnp.concatenate([x, y.astype(x.dtype)], axis=-1)


class DBlock(nn.Module):
    """One x2-down block: conv, blur + conv + avgpool (+ the residual skip)."""

    mid: int
    out: int
    resnet: bool

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        x = lrelu(EqualizedConv(self.mid, name="conv0")(x))
        x = lrelu(avg_pool2(EqualizedConv(self.out, name="conv1_down")(blur(x))))
        if self.resnet:
            cin = y.shape[-1]
            k = self.param("skip_kernel", nn.initializers.normal(1.0), (cin, self.out))
            y = avg_pool2(y) @ (k * cin**-0.5).astype(y.dtype)   # 1x1 conv, gain 1, no bias
            x = (x + y) * (1.0 / math.sqrt(2.0))
        return x


class Discriminator(nn.Module):
    """Images ``[N, R, R, C]`` in about [-1, 1] -> logits ``[N]`` (float32)."""

    config: DiscriminatorConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        cfg = self.config
        R = cfg.resolution
        if x.ndim != 4 or x.shape[1:] != (R, R, cfg.num_channels):
            raise ValueError(f"images must be [N, {R}, {R}, {cfg.num_channels}], got {x.shape}")
        top = cfg.log2_resolution
        x = lrelu(EqualizedConv(cfg.nf(top - 1), kernel_size=1, name="fromrgb")(x))
        for s in range(top, 2, -1):
            x = DBlock(cfg.nf(s - 1), cfg.nf(s - 2), cfg.architecture == "resnet",
                       name=f"{2**s}x{2**s}")(x)
        if cfg.mbstd_group_size > 1:
            x = minibatch_stddev(x, cfg.mbstd_group_size, cfg.mbstd_num_features)
        x = lrelu(EqualizedConv(cfg.nf(1), name="4x4_conv")(x))
        x = x.reshape(x.shape[0], -1)
        x = lrelu(EqualizedDense(cfg.nf(0), name="4x4_dense0")(x))
        x = EqualizedDense(1, gain=1.0, name="4x4_dense1")(x)
        return x[:, 0].astype(jnp.float32)


@functools.partial(jax.jit, static_argnums=0)
def init_params(config: DiscriminatorConfig, key: jax.Array) -> dict[str, Any]:
    """Random D parameters (weights N(0, 1), biases 0: equalized-lr init)."""
    x = jnp.zeros((2, config.resolution, config.resolution, config.num_channels), jnp.float32)
    return Discriminator(config).init(key, x)["params"]


def discriminate(config: DiscriminatorConfig, params: Any, images: jax.Array) -> jax.Array:
    """Logits ``[N]`` of images ``[N, R, R, C]`` (pure; jit it in the caller)."""
    return Discriminator(config).apply({"params": params}, images)
