"""StyleGAN v1 (Karras et al. 2019) generator as used by PULSE, in Flax, NHWC.

Everything is derived from a frozen :class:`GeneratorConfig`: the number of style layers
``L = 2 * log2(resolution) - 2``, the width of every block and the noise shapes. Nothing
here reads files or knows about the PULSE search.

Parameters are stored *raw*, exactly as the reference (and NVIDIA's TF checkpoints) stores
them; the equalized-learning-rate multipliers are applied at every forward pass, as the
reference does, so imported weights are bit-identical to the source files:

* dense ``kernel`` ``[in, out]`` (the reference's ``[out, in]`` transposed), ``bias [out]``;
* conv ``kernel`` ``[kh, kw, in, out]`` (HWIO; the reference's OIHW transposed), ``bias [out]``;
* the 4x4 block's ``const`` ``[1, 4, 4, C]`` and input ``bias [C]``;
* per epilogue ``noise_strength [C]`` and ``style`` dense ``[D, 2C]``.

Pure entry points: :func:`synthesize` and :func:`map_latents`. The ``Synthesis`` and
``Mapping`` modules sow each block's output under ``"intermediates"`` for debugging.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Mapping as MappingT, Sequence

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp

from pulse_jax import convs

Params = MappingT[str, Any]

FAMILY = "stylegan"
_SQRT2 = math.sqrt(2.0)
_LRELU_SLOPE = 0.2


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
    def from_dict(cls, d: MappingT[str, Any]) -> "GeneratorConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown GeneratorConfig fields: {sorted(unknown)}")
        return cls(**dict(d))


# ----------------------------------------------------------------------------------------
# Building blocks. All take and return NHWC float arrays.


def lrelu(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, x * _LRELU_SLOPE)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``x / sqrt(mean(x**2, -1) + eps)``; x: ``[N, D]``."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def instance_norm(x: jax.Array, eps: float) -> jax.Array:
    """Per (sample, channel) over H x W, biased variance, no affine (torch InstanceNorm2d)."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    centered = x - mean
    var = jnp.mean(jnp.square(centered), axis=(1, 2), keepdims=True)
    return centered * jax.lax.rsqrt(var + eps)


def effective_kernel(kernel: jax.Array, gain: float, up: str = "none") -> jax.Array:
    """A raw HWIO conv kernel with its equalized-lr scale applied (spatially flipped for the
    reference's fused transposed conv)."""
    k, cin = kernel.shape[0], kernel.shape[2]
    w = kernel * (gain * (cin * k * k) ** -0.5)
    return w[::-1, ::-1] if up == "fused" else w


class EqualizedDense(nn.Module):
    """Dense layer with equalized learning rate: ``x @ (W * gain/sqrt(in) * lrmul) + b * lrmul``."""

    features: int
    gain: float = _SQRT2
    lrmul: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.normal(1.0 / self.lrmul),
                            (fan_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        w_mul = self.gain * fan_in**-0.5 * self.lrmul
        return x @ (kernel * w_mul) + bias * self.lrmul


class EqualizedConv(nn.Module):
    """Equalized-lr conv with the reference's optional nearest/fused x2 upsampling and blur.

    ``up="none"``: conv + bias. ``up="nearest"``: nearest x2, conv (no bias), blur, + bias.
    ``up="fused"``: the reference's transposed conv, i.e. nearest x2 then the spatially
    flipped kernel, blur, + bias. ``upconv`` picks how an upsampling conv is computed
    ("direct" or "subpixel", see :mod:`pulse_jax.convs`); the function is the same.
    ``prepared``: the params are :func:`prepare_synthesis`'s ``{"w", "w_t", "bias"}``.
    """

    features: int
    kernel_size: int = 3
    gain: float = _SQRT2
    up: str = "none"
    upconv: str = "direct"
    prepared: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.up not in ("none", "nearest", "fused"):
            raise ValueError(f"unknown upsampling {self.up!r}")
        up = self.up != "none"
        if self.prepared:
            w = {name: self._prepared_param(name) for name in ("w", "w_t")}
            bias = self._prepared_param("bias")
            y = convs.apply_prepared(x, w, up, self.upconv)
        else:
            k = self.kernel_size
            kernel = self.param("kernel", nn.initializers.normal(1.0),
                                (k, k, x.shape[-1], self.features))
            bias = self.param("bias", nn.initializers.zeros, (self.features,))
            w = effective_kernel(kernel, self.gain, self.up)
            if self.is_mutable_collection("prepared"):  # prepare_synthesis is asking
                for name, value in convs.prepare_conv(w, up, self.upconv).items():
                    self.put_variable("prepared", name, value)
            y = convs.upsample_conv(x, w, self.upconv) if up else convs.conv2d(x, w)
        return (convs.blur(y) if up else y) + bias

    def _prepared_param(self, name: str) -> jax.Array:
        value = self.get_variable("params", name)
        if value is None:
            raise ValueError("a prepared Synthesis takes the params of prepare_synthesis "
                             f"(no {name!r} in {'/'.join(self.scope.path)})")
        return value


class LayerEpilogue(nn.Module):
    """noise -> LeakyReLU(0.2) -> instance norm -> style modulation (AdaIN)."""

    channels: int
    eps: float

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array) -> jax.Array:
        """x: ``[B, H, W, C]``; w: ``[B, D]`` (one W+ row); noise: ``[B, H, W, 1]``."""
        strength = self.param("noise_strength", nn.initializers.zeros, (self.channels,))
        x = x + strength * noise
        x = instance_norm(lrelu(x), self.eps)
        style = EqualizedDense(2 * self.channels, gain=1.0, name="style")(w)
        scale, shift = style[:, None, None, : self.channels], style[:, None, None, self.channels:]
        return x * (scale + 1.0) + shift


class InputBlock(nn.Module):
    """4x4: const + bias -> epilogue -> 3x3 conv -> epilogue."""

    channels: int
    eps: float
    prepared: bool = False

    @nn.compact
    def __call__(self, w0, w1, n0, n1):
        c = self.channels
        const = self.param("const", nn.initializers.ones, (1, 4, 4, c))
        bias = self.param("bias", nn.initializers.ones, (c,))
        x = jnp.broadcast_to(const, (w0.shape[0], 4, 4, c)) + bias
        x = LayerEpilogue(c, self.eps, name="epi1")(x, w0, n0)
        x = EqualizedConv(c, prepared=self.prepared, name="conv")(x)
        return LayerEpilogue(c, self.eps, name="epi2")(x, w1, n1)


class UpBlock(nn.Module):
    """x2 block: upsampling conv -> epilogue -> 3x3 conv -> epilogue."""

    channels: int
    eps: float
    fused: bool
    upconv: str = "direct"
    prepared: bool = False

    @nn.compact
    def __call__(self, x, w0, w1, n0, n1):
        c = self.channels
        x = EqualizedConv(c, up="fused" if self.fused else "nearest", upconv=self.upconv,
                          prepared=self.prepared, name="conv0_up")(x)
        x = LayerEpilogue(c, self.eps, name="epi1")(x, w0, n0)
        x = EqualizedConv(c, prepared=self.prepared, name="conv1")(x)
        return LayerEpilogue(c, self.eps, name="epi2")(x, w1, n1)


class Synthesis(nn.Module):
    """W+ latents and per-layer noise to an image.

    Attributes:
      config: the architecture.
      remat: rematerialize each block in the backward pass (``jax.checkpoint``), trading
        compute for the activation memory of many restarts at high resolution.
      upconv: how the upsampling convs are computed: "direct" (nearest x2 then 3x3, the
        reference's arithmetic) or "subpixel" (2.25x fewer multiply-adds; same function up
        to float rounding). Not part of the architecture: any checkpoint runs either way.
      prepared: the params are :func:`prepare_synthesis`'s (conv weights precomputed for
        many calls with frozen weights; the same function, differentiable in the inputs).
    """

    config: GeneratorConfig
    remat: bool = False
    upconv: str = "direct"
    prepared: bool = False

    @nn.compact
    def __call__(self, wplus: jax.Array, noises: Sequence[jax.Array]) -> jax.Array:
        """wplus: ``[B, L, D]``; noises: L arrays ``[B, r, r, 1]``.

        Returns the raw image ``[B, R, R, num_channels]``, roughly in [-1, 1], unclamped.
        """
        cfg = self.config
        L = cfg.num_layers
        if wplus.ndim != 3 or wplus.shape[1] != L or wplus.shape[2] != cfg.dlatent_size:
            raise ValueError(f"wplus must be [B, {L}, {cfg.dlatent_size}], got {wplus.shape}")
        if len(noises) != L:
            raise ValueError(f"expected {L} noise maps, got {len(noises)}")
        for i, (n, shape) in enumerate(zip(noises, cfg.noise_shapes)):
            if tuple(n.shape[1:]) != shape:
                raise ValueError(f"noise {i} must be [B, {shape[0]}, {shape[1]}, 1], got {n.shape}")
        wrap = nn.remat if self.remat else (lambda m: m)
        x = None
        for k, res in enumerate(cfg.block_resolutions):
            name = f"{res}x{res}"
            args = (wplus[:, 2 * k], wplus[:, 2 * k + 1], noises[2 * k], noises[2 * k + 1])
            if res == 4:
                x = wrap(InputBlock)(cfg.width(res), cfg.instance_norm_eps, self.prepared,
                                     name=name)(*args)
            else:
                x = wrap(UpBlock)(cfg.width(res), cfg.instance_norm_eps, cfg.is_fused(res),
                                  self.upconv, self.prepared, name=name)(x, *args)
            self.sow("intermediates", f"block_{name}", x)
        return EqualizedConv(cfg.num_channels, kernel_size=1, gain=1.0, prepared=self.prepared,
                             name="torgb")(x)


class Mapping(nn.Module):
    """z ``[N, D]`` -> w ``[N, D]``: pixel norm, then ``mapping_layers`` x (dense, LeakyReLU)."""

    config: GeneratorConfig

    @nn.compact
    def __call__(self, z: jax.Array) -> jax.Array:
        cfg = self.config
        x = pixel_norm(z)
        for i in range(cfg.mapping_layers):
            x = lrelu(EqualizedDense(cfg.dlatent_size, lrmul=cfg.mapping_lrmul, name=f"dense{i}")(x))
        return x


# ----------------------------------------------------------------------------------------
# Pure functions of (config, params, inputs).


@functools.partial(jax.jit, static_argnames=("config", "remat", "upconv"))
def synthesize(config: GeneratorConfig, params: Params, wplus: jax.Array,
               noises: Sequence[jax.Array], remat: bool = False,
               upconv: str = "direct") -> jax.Array:
    """Raw synthesis output ``[B, R, R, 3]`` (about [-1, 1]) from W+ ``[B, L, D]`` and noise.

    ``remat`` and ``upconv`` change how it is computed, not what (see :class:`Synthesis`).
    """
    return Synthesis(config, remat=remat, upconv=upconv).apply({"params": params}, wplus,
                                                               list(noises))


def synthesis_prepared(config: GeneratorConfig, prepared: Params, wplus: jax.Array,
                       noises: Sequence[jax.Array], *, remat: bool = False,
                       upconv: str = "direct") -> jax.Array:
    """Unjitted :func:`synthesize` from :func:`prepare_synthesis`'s params (for callers that
    jit a larger function, such as the search step)."""
    return Synthesis(config, remat=remat, upconv=upconv,
                     prepared=True).apply({"params": prepared}, wplus, noises)


def mapping_apply(config: GeneratorConfig, params: Params, z: jax.Array) -> jax.Array:
    """Unjitted :func:`map_latents`."""
    return Mapping(config).apply({"params": params}, z)


@functools.partial(jax.jit, static_argnames=("config",))
def map_latents(config: GeneratorConfig, params: Params, z: jax.Array) -> jax.Array:
    """Mapping network: z ``[N, D]`` -> w ``[N, D]``."""
    return mapping_apply(config, params, z)


def prepare_synthesis(config: GeneratorConfig, params: Params, upconv: str = "direct") -> dict:
    """Synthesis params with every conv's weight arithmetic done once, for a
    ``Synthesis(config, upconv=upconv, prepared=True)``.

    Each conv's ``kernel`` becomes ``{"w", "w_t"}`` (:func:`pulse_jax.convs.prepare_conv`):
    the scaled (flipped, folded) kernel and the kernel of its input gradient. Worth it when
    the same frozen weights run many times (a search step would otherwise redo it). The
    convs record them themselves during a pass over an empty batch, so which conv upsamples
    and with what gain is known in one place only, the modules.
    """
    wplus = jnp.zeros((0, config.num_layers, config.dlatent_size), jnp.float32)
    _, recorded = Synthesis(config, upconv=upconv).apply(
        {"params": params}, wplus, noise_zeros(config, 0), mutable=["prepared"])
    prepared = traverse_util.flatten_dict(recorded["prepared"])
    replaced = {k[:-1] + ("kernel",) for k in prepared}
    flat = {k: v for k, v in traverse_util.flatten_dict(params).items() if k not in replaced}
    return traverse_util.unflatten_dict({**flat, **prepared})


def init_params(config: GeneratorConfig, key: jax.Array) -> dict[str, Any]:
    """Random parameters ``{"synthesis": ..., "mapping": ...}`` with the reference's init.

    Like the reference, biases and noise strengths start at 0 and const/input bias at 1.
    """
    ks, km = jax.random.split(key)
    L, D = config.num_layers, config.dlatent_size
    wplus = jnp.zeros((1, L, D), jnp.float32)
    noises = [jnp.zeros((1,) + s, jnp.float32) for s in config.noise_shapes]
    # jit: an eager init would run the full-resolution forward pass op by op.
    synthesis = jax.jit(lambda k: Synthesis(config).init(k, wplus, noises)["params"])(ks)
    mapping = jax.jit(lambda k: Mapping(config).init(k, wplus[:, 0])["params"])(km)
    return {"synthesis": synthesis, "mapping": mapping}


def param_shapes(config: GeneratorConfig) -> dict[str, Any]:
    """The params pytree of ``config`` as ``jax.ShapeDtypeStruct`` leaves (nothing computed)."""
    return jax.eval_shape(lambda k: init_params(config, k), jax.random.PRNGKey(0))


def noise_zeros(config: GeneratorConfig, batch: int, dtype=jnp.float32) -> list[jax.Array]:
    """All-zero noise maps, one ``[batch, r, r, 1]`` per layer."""
    return [jnp.zeros((batch,) + s, dtype) for s in config.noise_shapes]


def noise_normal(config: GeneratorConfig, key: jax.Array, batch: int) -> list[jax.Array]:
    """Standard-normal noise maps, one ``[batch, r, r, 1]`` per layer (one key per layer)."""
    keys = jax.random.split(key, config.num_layers)
    return [jax.random.normal(k, (batch,) + s, jnp.float32)
            for k, s in zip(keys, config.noise_shapes)]
