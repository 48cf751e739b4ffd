"""Downscales ``D``: high-resolution image -> low-resolution image (the operator objects built
on them are in :mod:`pulse_jax.degrade.operators`).

Every function here is a pure function with the signature :data:`Degradation`:
``[B, H, W, C] float32 -> [B, H/f, W/f, C] float32``, in whatever range the input has (PULSE feeds
``(rgb + 1) / 2``, roughly ``[0, 1]`` but unclamped). Nothing is clipped or rounded.

``bicubic`` is PULSE's ``BicubicDownSample`` (``bicubic.py``; docs/reference.md, "The downscale
operator") to float32 rounding: a separable bicubic (a = -0.5) filter of ``4 f`` taps, reflect
padding, rows first and then columns. It works for any channel count (the reference needs
exactly 3) and any integer factor ``f >= 1``.

Implementation: each 1-D pass is a dense contraction with a ``[H/f, H]`` banded matrix that
already contains the reflect padding (a padded sample's tap is added to the entry of the pixel it
mirrors). It is faster than a depthwise strided conv or a reshape-into-blocks formulation on
CPU (docs/performance.md, "The downscale operator"), a single matmul per axis on accelerators,
and exact to float32 rounding against the conv form.
"""

from __future__ import annotations

import functools
import operator
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Degradation = Callable[[jax.Array], jax.Array]
"""``[B, H, W, C]`` high-resolution image -> ``[B, H/f, W/f, C]`` low-resolution image."""

DEGRADATIONS = ("bicubic", "area", "gaussian")


def _check_factor(factor: int) -> int:
    """Returns ``factor`` as a Python int, or raises ValueError unless it is an integer >= 1."""
    if isinstance(factor, (bool, np.bool_)):
        raise ValueError(f"factor must be an integer >= 1, got {factor!r}")
    try:
        f = operator.index(factor)  # accepts int and numpy integers, rejects 2.0 and "2"
    except TypeError:
        raise ValueError(
            f"factor must be an integer >= 1, got {factor!r} of type {type(factor).__name__}"
        ) from None
    if f < 1:
        raise ValueError(f"factor must be an integer >= 1, got {f}")
    return f


def _check_image(x: jax.Array, factor: int) -> None:
    """Raises ValueError unless ``x`` is ``[B, H, W, C]`` with H and W divisible by ``factor``."""
    if x.ndim != 4:
        raise ValueError(f"expected an NHWC image batch [B, H, W, C], got shape {x.shape}")
    _, h, w, _ = x.shape
    if h % factor or w % factor:
        raise ValueError(
            f"image size {h}x{w} is not divisible by the downscaling factor {factor}"
        )


def cubic(x: np.ndarray | float, a: float = -0.5) -> np.ndarray:
    """The bicubic convolution kernel (Keys, a = -0.5 as in PULSE), elementwise.

    Args:
      x: positions, any shape. A float dtype is kept (float32 in, float32 arithmetic out);
        Python numbers and integers are evaluated in float64.
      a: the kernel's free parameter.

    Returns:
      ``c(x)``: ``(a+2)|x|^3 - (a+3)|x|^2 + 1`` for ``|x| <= 1``,
      ``a|x|^3 - 5a|x|^2 + 8a|x| - 4a`` for ``1 < |x| < 2``, else 0. Same shape and dtype as x.
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    ax = np.abs(x)
    # Same operation order as the reference (torch.pow(., 3) is x*x*x on CPU).
    inner = (a + 2.0) * (ax * ax * ax) - (a + 3.0) * (ax * ax) + 1.0
    outer = a * (ax * ax * ax) - (5.0 * a) * (ax * ax) + (8.0 * a) * ax - 4.0 * a
    zero = np.zeros_like(ax)
    return np.where(ax <= 1.0, inner, np.where(ax < 2.0, outer, zero)).astype(ax.dtype)


def bicubic_kernel(factor: int) -> np.ndarray:
    """PULSE's normalized 1-D bicubic taps for downscaling by ``factor``.

    Computed in float32 like the reference: tap i (0 <= i < 4f) is
    ``c((i - 2f + 0.5) / f)``, then divided by the sum of the taps (which is ~f).

    Returns:
      ``[4 * factor]`` float32, symmetric, sums to 1. Factor 1 gives (-1/16, 9/16, 9/16, -1/16).
    """
    f = _check_factor(factor)
    pos = (np.arange(4 * f, dtype=np.float32) - np.float32(2 * f) + np.float32(0.5)) / np.float32(f)
    taps = cubic(pos).astype(np.float32)
    return (taps / np.sum(taps, dtype=np.float32)).astype(np.float32)


def _reflect_index(p: np.ndarray, n: int) -> np.ndarray:
    """Maps positions in a reflect-padded axis (edge not repeated) back to ``[0, n)``.

    Pads longer than ``n - 1`` (which torch rejects) reflect repeatedly, like ``np.pad``.
    """
    if n == 1:
        return np.zeros_like(p)
    period = 2 * (n - 1)
    m = np.mod(p, period)
    return np.where(m >= n, period - m, m)


def _banded(size: int, pos: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The float64 ``[rows, size]`` matrix whose row r adds ``weights[r, i]`` at input position
    ``pos[r, i]``, positions outside ``[0, size)`` mirrored back first (reflect padding)."""
    rows, taps = pos.shape
    mat = np.zeros((rows, size), np.float64)
    np.add.at(mat, (np.repeat(np.arange(rows), taps), _reflect_index(pos, size).ravel()),
              weights.ravel())
    return mat


@functools.lru_cache(maxsize=64)
def bicubic_matrix(size: int, factor: int) -> np.ndarray:
    """The ``[size / factor, size]`` float32 matrix of one bicubic pass, reflect padding folded in.

    Row s holds the taps of output sample s: input position ``s*f - floor(3f/2) + i`` gets tap
    i, and positions outside ``[0, size)`` are mirrored (reflect, edge excluded) before adding.
    The entries are accumulated in float64 from the float32 taps, then rounded once to float32.
    The returned array is read-only (it is cached).
    """
    f = _check_factor(factor)
    if size < 1 or size % f:
        raise ValueError(f"size {size} is not a positive multiple of the factor {f}")
    taps = bicubic_kernel(f).astype(np.float64)
    rows = size // f
    before = (3 * f) // 2  # the rest, 3f - before, pads the end; only `before` sets positions
    pos = np.arange(rows)[:, None] * f - before + np.arange(4 * f)[None, :]  # [rows, 4f]
    mat = _banded(size, pos, np.tile(taps, rows)).astype(np.float32)
    mat.setflags(write=False)
    return mat


def bicubic_downscale(x: jax.Array, factor: int) -> jax.Array:
    """PULSE's bicubic downscale (``BicubicDownSample``, reflect padding), channel-agnostic.

    Args:
      x: ``[B, H, W, C]`` images, any range (not clamped or rounded). H and W divisible by
        ``factor``. Integer and low-precision inputs are computed in (at least) float32.
      factor: integer >= 1.

    Returns:
      ``[B, H/f, W/f, C]``: rows filtered and subsampled first, then columns, as the reference.
      Pure and jit/grad/vmap friendly (the matrices are trace-time constants).
    """
    return _separable(x, factor, bicubic_matrix)


def _separable(x: jax.Array, factor: int, matrix: Callable[[int, int], np.ndarray]) -> jax.Array:
    """``x`` ``[B, H, W, C]`` through the pass ``matrix(size, factor)`` on rows, then columns."""
    f = _check_factor(factor)
    x = jnp.asarray(x)
    _check_image(x, f)
    dtype = jnp.promote_types(x.dtype, jnp.float32)
    x = x.astype(dtype)
    _, h, w, _ = x.shape
    rows = jnp.asarray(matrix(h, f), dtype)
    cols = jnp.asarray(matrix(w, f), dtype)
    # HIGHEST: the LR image is compared against eps ~ 2e-3 in the loss, so no TF32/bf16 passes.
    hp = lax.Precision.HIGHEST
    x = jnp.einsum("sh,bhwc->bswc", rows, x, precision=hp)
    return jnp.einsum("tw,bswc->bstc", cols, x, precision=hp)


def area_downscale(x: jax.Array, factor: int) -> jax.Array:
    """Box-filter downscale: the mean of each non-overlapping ``factor x factor`` block.

    Args:
      x: ``[B, H, W, C]``, H and W divisible by ``factor``.
      factor: integer >= 1 (1 is the identity).

    Returns:
      ``[B, H/f, W/f, C]`` in (at least) float32.
    """
    f = _check_factor(factor)
    x = jnp.asarray(x)
    _check_image(x, f)
    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    b, h, w, c = x.shape
    return x.reshape(b, h // f, f, w // f, f, c).mean(axis=(2, 4))


def gaussian_sigma(factor: int) -> float:
    """The antialiasing Gaussian's standard deviation for a ``factor`` downscale, in HR
    pixels: ``(f - 1) / 2`` (the rule scikit-image's ``rescale(anti_aliasing=True)`` uses)."""
    return (_check_factor(factor) - 1) / 2


@functools.lru_cache(maxsize=64)
def gaussian_matrix(size: int, factor: int) -> np.ndarray:
    """The ``[size / factor, size]`` float32 matrix of one Gaussian-antialiased pass.

    Output sample s is a Gaussian-weighted mean (sigma :func:`gaussian_sigma`) centred on its
    block's centre ``(s + 0.5) f - 0.5``, over ``4 sigma + f/2`` pixels each side, reflect
    padding folded in as in :func:`bicubic_matrix`, each row normalised to sum 1. Factor 1
    is the identity. Read-only (cached).
    """
    f = _check_factor(factor)
    if size < 1 or size % f:
        raise ValueError(f"size {size} is not a positive multiple of the factor {f}")
    rows = size // f
    if f == 1:
        mat = np.eye(size, dtype=np.float32)
    else:
        sigma = gaussian_sigma(f)
        radius = int(np.ceil(4 * sigma + f / 2))
        centre = (np.arange(rows) + 0.5) * f - 0.5                       # [rows]
        pos = np.floor(centre)[:, None] + np.arange(-radius, radius + 2)[None, :]
        w = np.exp(-0.5 * np.square((pos - centre[:, None]) / sigma))    # [rows, taps]
        mat = _banded(size, pos.astype(np.int64), w)
        mat = (mat / mat.sum(axis=1, keepdims=True)).astype(np.float32)
    mat.setflags(write=False)
    return mat


def gaussian_downscale(x: jax.Array, factor: int) -> jax.Array:
    """Gaussian-antialiased downscale: blur with sigma ``(f - 1) / 2``, sample each block's
    centre (:func:`gaussian_matrix`, rows then columns, reflect padding).

    Args:
      x: ``[B, H, W, C]``, H and W divisible by ``factor``.
      factor: integer >= 1 (1 is the identity).

    Returns:
      ``[B, H/f, W/f, C]`` in (at least) float32.
    """
    return _separable(x, factor, gaussian_matrix)


def make_degradation(name: str, factor: int) -> Degradation:
    """Returns the degradation ``D: [B, H, W, C] -> [B, H/f, W/f, C]`` called ``name``.

    Args:
      name: "bicubic" (PULSE's operator, the reference), "area" (f x f average) or
        "gaussian" (:func:`gaussian_downscale`).
      factor: integer >= 1. Calling ``D`` on an image whose size is not divisible by it raises
        ValueError.

    Raises:
      ValueError: unknown name, or a factor that is not an integer >= 1.
    """
    f = _check_factor(factor)
    ops = {"bicubic": bicubic_downscale, "area": area_downscale,
           "gaussian": gaussian_downscale}
    if name not in ops:
        raise ValueError(f"unknown degradation {name!r}; valid names: {', '.join(DEGRADATIONS)}")
    op = ops[name]

    def degrade(x: jax.Array) -> jax.Array:
        return op(x, f)

    degrade.__name__ = f"{name}_x{f}"
    return degrade
