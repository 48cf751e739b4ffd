"""The official ``torch_utils/ops`` StyleGAN2 needs, on NHWC float32 arrays: ``bias_act``,
equalized-lr dense layers, the FIR up-sampling (``upfirdn2d``), ``conv2d_resample`` and the
modulated convolution with demodulation."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.stylegan.layers import lrelu, pixel_norm
from pulse_jax.stylegan2.config import StyleGAN2Config

Params = Mapping[str, Any]

_SQRT2 = math.sqrt(2.0)

# The same LeakyReLU(0.2) and second-moment normalization as StyleGAN v1's (official names).
normalize_2nd_moment = pixel_norm


def bias_act(x: jax.Array, bias: Optional[jax.Array], act: str, gain: float,
             clamp: Optional[float]) -> jax.Array:
    """The official ``bias_act``: add bias, activate, scale by ``gain``, clamp to +-clamp."""
    if bias is not None:
        x = x + bias
    if act == "lrelu":
        x = lrelu(x)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def dense(p: Params, x: jax.Array, lr_multiplier: float = 1.0, act: str = "linear") -> jax.Array:
    """Equalized-lr dense layer; ``p["weight"]`` ``[in, out]``; lrelu layers gain sqrt(2)."""
    w = p["weight"] * (lr_multiplier / math.sqrt(p["weight"].shape[0]))
    gain = _SQRT2 if act == "lrelu" else 1.0
    return bias_act(x @ w, p["bias"] * lr_multiplier, act, gain, None)


def fir_filter(config: StyleGAN2Config) -> np.ndarray:
    """The 2-D FIR ``outer(f, f) / sum(f)**2`` ``[k, k]`` (the official ``setup_filter``)."""
    f = np.asarray(config.resample_filter, np.float32)
    f2 = np.outer(f, f)
    return (f2 / f2.sum()).astype(np.float32)


def _conv(x: jax.Array, w: jax.Array, padding, lhs_dilation=(1, 1),
          groups: int = 1) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, w, window_strides=(1, 1), padding=padding, lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _fir(x: jax.Array, f: np.ndarray, pad: tuple[int, int], up: bool) -> jax.Array:
    """The official ``upfirdn2d`` with ``down=1``: optional x2 zero insertion, pad (before,
    after; with respect to the upsampled image), then convolve every channel with ``f``
    (times 4 when upsampling, to keep the signal's magnitude)."""
    c = x.shape[-1]
    k = f[::-1, ::-1] * (4.0 if up else 1.0)  # convolution, not correlation
    w = jnp.broadcast_to(jnp.asarray(k)[:, :, None, None], k.shape + (1, c))
    # Zero insertion of an H-sample signal gives 2H samples (a trailing zero); lhs_dilation
    # gives 2H - 1, so the trailing pad grows by one.
    pad_hw = (pad[0], pad[1] + 1) if up else pad
    return _conv(x, w, (pad_hw, pad_hw), (2, 2) if up else (1, 1), groups=c)


def upsample2d(config: StyleGAN2Config, x: jax.Array) -> jax.Array:
    """The official ``upsample2d``: ``[B, H, W, C]`` -> ``[B, 2H, 2W, C]`` with the FIR."""
    f = fir_filter(config)
    fw = f.shape[0]
    return _fir(x, f, ((fw + 1) // 2, (fw - 2) // 2), up=True)


def conv2d_resample(config: StyleGAN2Config, x: jax.Array, w: jax.Array, up: bool) -> jax.Array:
    """The official ``conv2d_resample`` as its layers use it (``padding = k // 2``).

    Without ``up``: correlation with ``w`` ``[k, k, I, O]``, same size. With ``up``: zero
    insertion, the FIR and a true convolution with ``w`` (the official layers pass
    ``flip_weight=False`` when upsampling), ``[B, H, W, I]`` -> ``[B, 2H, 2W, O]``.
    """
    k = w.shape[0]
    p = k // 2
    if not up:
        return _conv(x, w, ((p, p), (p, p)))
    f = fir_filter(config)
    fw = f.shape[0]
    if k == 1:  # 1x1 conv first, then the FIR (the official fast path)
        return _fir(_conv(x, w, ((0, 0), (0, 0))), f, (p + (fw + 1) // 2, p + (fw - 2) // 2), True)
    # Both steps are linear and shift invariant, so the conv runs first on the zero-inserted
    # input (padded as the official code pads it for the FIR) and the FIR runs last, valid.
    pad0, pad1 = p + (fw + 1) // 2, p + (fw - 2) // 2
    y = _conv(x, w[::-1, ::-1], ((pad0, pad1 + 1),) * 2, lhs_dilation=(2, 2))
    return _fir(y, f, (0, 0), up=False) * 4.0


def modulated_conv(config: StyleGAN2Config, x: jax.Array, weight: jax.Array, styles: jax.Array,
                   demodulate: bool = True, up: bool = False) -> jax.Array:
    """The official ``modulated_conv2d`` (unfused form: scale the activations, not the weights).

    x ``[B, H, W, I]``; weight ``[k, k, I, O]``; styles ``[B, I]``. Demodulation divides each
    output channel by ``sqrt(sum_{k,k,I} (weight * style)**2 + 1e-8)``.
    """
    y = conv2d_resample(config, x * styles[:, None, None, :], weight, up)
    if demodulate:
        wsq = jnp.sum(jnp.square(weight), axis=(0, 1))  # [I, O]
        dcoefs = jax.lax.rsqrt(jnp.square(styles) @ wsq + 1e-8)  # [B, O]
        y = y * dcoefs[:, None, None, :]
    return y
