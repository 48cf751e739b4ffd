"""The StyleGAN v1 mapping and synthesis networks as Flax modules, and the pure functions of
(config, params, inputs) over them: :func:`synthesize`, :func:`map_latents`, the prepared
synthesis a search runs many times, and the noise inputs."""

from __future__ import annotations

import functools
from typing import Sequence

from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp

from pulse_jax.stylegan.config import GeneratorConfig
from pulse_jax.stylegan.layers import (EqualizedConv, EqualizedDense, LayerEpilogue, Params,
                                       lrelu, pixel_norm)

# Synthesis(epilogue=...): which layers' epilogues get their gradient written out
# (layers.epilogue). "fused_large" only those at FUSED_EPILOGUE_MIN_RESOLUTION and above,
# so that a smaller generator (the shipped one) keeps autodiff's arithmetic and its pinned
# results (docs/performance.md, "The layer epilogue's gradient").
EPILOGUES = ("autodiff", "fused", "fused_large")
FUSED_EPILOGUE_MIN_RESOLUTION = 128


def epilogue_grad(epilogue: str, resolution: int) -> str:
    """The :class:`LayerEpilogue` ``grad`` of a block at ``resolution`` for ``epilogue``."""
    if epilogue not in EPILOGUES:
        raise ValueError(f"epilogue must be one of {EPILOGUES}, got {epilogue!r}")
    if epilogue == "fused" or (epilogue == "fused_large"
                               and resolution >= FUSED_EPILOGUE_MIN_RESOLUTION):
        return "fused"
    return "autodiff"


class InputBlock(nn.Module):
    """4x4: const + bias -> epilogue -> 3x3 conv -> epilogue."""

    channels: int
    eps: float
    prepared: bool = False
    grad: str = "autodiff"

    @nn.compact
    def __call__(self, w0, w1, n0, n1):
        c = self.channels
        const = self.param("const", nn.initializers.ones, (1, 4, 4, c))
        bias = self.param("bias", nn.initializers.ones, (c,))
        x = jnp.broadcast_to(const, (w0.shape[0], 4, 4, c)) + bias
        x = LayerEpilogue(c, self.eps, self.grad, name="epi1")(x, w0, n0)
        x = EqualizedConv(c, prepared=self.prepared, name="conv")(x)
        return LayerEpilogue(c, self.eps, self.grad, name="epi2")(x, w1, n1)


class UpBlock(nn.Module):
    """x2 block: upsampling conv -> epilogue -> 3x3 conv -> epilogue."""

    channels: int
    eps: float
    fused: bool
    upconv: str = "direct"
    prepared: bool = False
    grad: str = "autodiff"

    @nn.compact
    def __call__(self, x, w0, w1, n0, n1):
        c = self.channels
        x = EqualizedConv(c, up="fused" if self.fused else "nearest", upconv=self.upconv,
                          prepared=self.prepared, name="conv0_up")(x)
        x = LayerEpilogue(c, self.eps, self.grad, name="epi1")(x, w0, n0)
        x = EqualizedConv(c, prepared=self.prepared, name="conv1")(x)
        return LayerEpilogue(c, self.eps, self.grad, name="epi2")(x, w1, n1)


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
      epilogue: how the layer epilogues are differentiated: "autodiff", "fused" (their
        gradient written out, :func:`pulse_jax.stylegan.layers.epilogue`) or "fused_large"
        (fused from :data:`FUSED_EPILOGUE_MIN_RESOLUTION` up). The same values; gradients
        equal up to float rounding.
    """

    config: GeneratorConfig
    remat: bool = False
    upconv: str = "direct"
    prepared: bool = False
    epilogue: str = "autodiff"

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
            grad = epilogue_grad(self.epilogue, res)
            if res == 4:
                x = wrap(InputBlock)(cfg.width(res), cfg.instance_norm_eps, self.prepared,
                                     grad, name=name)(*args)
            else:
                x = wrap(UpBlock)(cfg.width(res), cfg.instance_norm_eps, cfg.is_fused(res),
                                  self.upconv, self.prepared, grad, name=name)(x, *args)
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
                       upconv: str = "direct", epilogue: str = "autodiff") -> jax.Array:
    """Unjitted :func:`synthesize` from :func:`prepare_synthesis`'s params (for callers that
    jit a larger function, such as the search step; ``epilogue``: see :class:`Synthesis`)."""
    return Synthesis(config, remat=remat, upconv=upconv, prepared=True,
                     epilogue=epilogue).apply({"params": prepared}, wplus, noises)


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

    Each conv's ``kernel`` becomes ``{"w", "w_t"}``
    (:func:`pulse_jax.stylegan.convs.prepare_conv`): the scaled (flipped, folded) kernel and
    the kernel of its input gradient. Worth it when
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


def noise_zeros(config: GeneratorConfig, batch: int, dtype=jnp.float32) -> list[jax.Array]:
    """All-zero noise maps, one ``[batch, r, r, 1]`` per layer."""
    return [jnp.zeros((batch,) + s, dtype) for s in config.noise_shapes]


def noise_normal(config: GeneratorConfig, key: jax.Array, batch: int) -> list[jax.Array]:
    """Standard-normal noise maps, one ``[batch, r, r, 1]`` per layer (one key per layer)."""
    keys = jax.random.split(key, config.num_layers)
    return [jax.random.normal(k, (batch,) + s, jnp.float32)
            for k, s in zip(keys, config.noise_shapes)]
