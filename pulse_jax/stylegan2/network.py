"""The StyleGAN2 mapping and synthesis networks as pure functions of (config, params, inputs),
and the noise inputs.

W+ has ``num_layers`` rows: conv layer ``i`` (in the official order ``b4.conv1, b8.conv0,
b8.conv1, ...``) reads row ``i`` and noise map ``i``; a block's ToRGB reads the row after its
last conv (the next block's first), as the official code does.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp

from pulse_jax.stylegan2.config import StyleGAN2Config
from pulse_jax.stylegan2.layers import (bias_act, conv2d_resample, dense, modulated_conv,
                                        normalize_2nd_moment, upsample2d)

Params = Mapping[str, Any]

_SQRT2 = math.sqrt(2.0)


def synthesis_layer(config: StyleGAN2Config, p: Params, x: jax.Array, w: jax.Array,
                    noise: jax.Array, up: bool, gain: float = 1.0) -> jax.Array:
    """Modulated 3x3 conv (optionally x2 up) + noise * strength + bias, lrelu, clamp.

    x ``[B, H, W, I]``; w ``[B, w_dim]``; noise ``[B, r, r, 1]`` (r the output side).
    """
    styles = dense(p["affine"], w)
    y = modulated_conv(config, x, p["weight"], styles, demodulate=True, up=up)
    y = y + noise * p["noise_strength"]
    clamp = None if config.conv_clamp is None else config.conv_clamp * gain
    return bias_act(y, p["bias"], "lrelu", _SQRT2 * gain, clamp)


def torgb_layer(config: StyleGAN2Config, p: Params, x: jax.Array, w: jax.Array) -> jax.Array:
    """1x1 modulated conv without demodulation, + bias, clamp: ``[B, H, W, img_channels]``."""
    k = p["weight"].shape[0]
    styles = dense(p["affine"], w) * (1.0 / math.sqrt(p["weight"].shape[2] * k * k))
    y = modulated_conv(config, x, p["weight"], styles, demodulate=False)
    return bias_act(y, p["bias"], "linear", 1.0, config.conv_clamp)


def synthesis_block(config: StyleGAN2Config, res: int, p: Params, x: Optional[jax.Array],
                    img: Optional[jax.Array], ws: Sequence[jax.Array],
                    noises: Sequence[jax.Array]) -> tuple[jax.Array, Optional[jax.Array]]:
    """One block: (features, image so far) -> (features, image) at side ``res``.

    ``ws``: its rows (conv rows then the ToRGB row), ``noises``: its conv layers' maps.
    """
    if res == 4:
        B = ws[0].shape[0]
        x = jnp.broadcast_to(p["const"][None], (B,) + p["const"].shape)
        x = synthesis_layer(config, p["conv1"], x, ws[0], noises[0], up=False)
        wrgb = ws[1]
    elif config.architecture == "resnet":
        k = p["skip"]["weight"]
        y = bias_act(conv2d_resample(config, x, k * (1.0 / math.sqrt(k.shape[2])), up=True),
                     None, "linear", math.sqrt(0.5), None)
        x = synthesis_layer(config, p["conv0"], x, ws[0], noises[0], up=True)
        x = synthesis_layer(config, p["conv1"], x, ws[1], noises[1], up=False,
                            gain=math.sqrt(0.5))
        x = y + x
        wrgb = ws[2]
    else:
        x = synthesis_layer(config, p["conv0"], x, ws[0], noises[0], up=True)
        x = synthesis_layer(config, p["conv1"], x, ws[1], noises[1], up=False)
        wrgb = ws[2]
    if img is not None:
        img = upsample2d(config, img)
    if config.has_torgb(res):
        y = torgb_layer(config, p["torgb"], x, wrgb)
        img = y if img is None else img + y
    return x, img


def check_inputs(config: StyleGAN2Config, wplus: jax.Array, noises: Sequence[jax.Array]) -> None:
    L, D = config.num_layers, config.w_dim
    if wplus.ndim != 3 or wplus.shape[1] != L or wplus.shape[2] != D:
        raise ValueError(f"wplus must be [B, {L}, {D}], got {wplus.shape}")
    shapes = config.noise_shapes
    if len(noises) != len(shapes):
        raise ValueError(f"expected {len(shapes)} noise maps, got {len(noises)}")
    for i, (n, shape) in enumerate(zip(noises, shapes)):
        if tuple(n.shape[1:]) != shape:
            raise ValueError(f"noise {i} must be [B, {shape[0]}, {shape[1]}, 1], got {n.shape}")


def synthesis_apply(config: StyleGAN2Config, params: Params, wplus: jax.Array,
                    noises: Sequence[jax.Array], remat: bool = False) -> jax.Array:
    """Unjitted :func:`synthesize` (for callers that jit a larger function)."""
    check_inputs(config, wplus, noises)
    x = img = None
    row = 0
    for res in config.block_resolutions:
        n_conv = 1 if res == 4 else 2
        ws = [wplus[:, row + j] for j in range(n_conv + 1)]
        block_noises = list(noises[row:row + n_conv])
        fn = functools.partial(synthesis_block, config, res)
        if remat:
            fn = jax.checkpoint(fn)
        x, img = fn(params[f"b{res}"], x, img, ws, block_noises)
        row += n_conv
    return img


def prepare_synthesis(config: StyleGAN2Config, params: Params, upconv: str = "direct") -> Params:
    """The synthesis params as a search reads them: as they are, since StyleGAN2's convs are
    modulated per sample (``upconv``, a StyleGAN v1 option, does not apply)."""
    del config, upconv
    return params


def synthesis_prepared(config: StyleGAN2Config, prepared: Params, wplus: jax.Array,
                       noises: Sequence[jax.Array], *, remat: bool = False,
                       upconv: str = "direct", epilogue: str = "autodiff") -> jax.Array:
    """:func:`synthesis_apply` from :func:`prepare_synthesis`'s params (``upconv`` and
    ``epilogue``, StyleGAN v1 options, are ignored)."""
    del upconv, epilogue
    return synthesis_apply(config, prepared, wplus, noises, remat)


@functools.partial(jax.jit, static_argnames=("config", "remat"))
def synthesize(config: StyleGAN2Config, params: Params, wplus: jax.Array,
               noises: Sequence[jax.Array], remat: bool = False) -> jax.Array:
    """Raw image ``[B, R, R, img_channels]`` (about [-1, 1], unclamped) from W+
    ``[B, num_layers, w_dim]`` and one noise map ``[B, r, r, 1]`` per conv layer.

    ``remat`` rematerializes each block in the backward pass (same function).
    """
    return synthesis_apply(config, params, wplus, list(noises), remat)


def mapping_apply(config: StyleGAN2Config, params: Params, z: jax.Array) -> jax.Array:
    x = normalize_2nd_moment(z)
    for i in range(config.mapping_layers):
        x = dense(params[f"fc{i}"], x, config.mapping_lr_multiplier, "lrelu")
    return x


@functools.partial(jax.jit, static_argnames=("config",))
def map_latents(config: StyleGAN2Config, params: Params, z: jax.Array) -> jax.Array:
    """Mapping network: z ``[N, z_dim]`` -> w ``[N, w_dim]`` (one row; no truncation)."""
    if z.ndim != 2 or z.shape[1] != config.z_dim:
        raise ValueError(f"z must be [N, {config.z_dim}], got {z.shape}")
    return mapping_apply(config, params, z)


def truncate(w: jax.Array, w_avg: jax.Array, psi: float,
             cutoff: Optional[int] = None) -> jax.Array:
    """The official truncation ``w_avg + psi * (w - w_avg)``; w ``[N, D]`` or W+ ``[N, L, D]``;
    with ``cutoff``, only W+ rows below it are truncated."""
    t = w_avg + psi * (w - w_avg)
    if cutoff is None:
        return t
    if w.ndim != 3:
        raise ValueError("truncation cutoff needs W+ [N, L, D]")
    rows = jnp.arange(w.shape[1])[None, :, None] < cutoff
    return jnp.where(rows, t, w)


def noise_zeros(config: StyleGAN2Config, batch: int, dtype=jnp.float32) -> list[jax.Array]:
    """All-zero noise maps, one ``[batch, r, r, 1]`` per conv layer."""
    return [jnp.zeros((batch,) + s, dtype) for s in config.noise_shapes]


def noise_normal(config: StyleGAN2Config, key: jax.Array, batch: int) -> list[jax.Array]:
    """Standard-normal noise maps, one ``[batch, r, r, 1]`` per conv layer."""
    keys = jax.random.split(key, len(config.noise_shapes))
    return [jax.random.normal(k, (batch,) + s, jnp.float32)
            for k, s in zip(keys, config.noise_shapes)]


def const_noise(config: StyleGAN2Config, params: Params, batch: int) -> list[jax.Array]:
    """The stored noise (the official ``noise_mode='const'``), ``[batch, r, r, 1]`` each."""
    syn = params["synthesis"] if "synthesis" in params else params
    return [jnp.broadcast_to(syn[f"b{res}"][conv]["noise_const"][None, :, :, None],
                             (batch, res, res, 1))
            for res, conv in config.conv_layers]
