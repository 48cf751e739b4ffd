"""Degradation operators ``A`` as small pytrees: what turned a high-resolution face into the
observation the search must match.

An operator is a ``flax.struct.dataclass``: its arrays (blur kernels, masks, the noise sigma)
are pytree leaves and its settings (factors, kernel names, the gray standard) are static
fields. ``op(x)`` maps ``[B, H, W, C]`` images (``~[0, 1]``, not clipped) to the observation
space, pure and jit/grad/vmap friendly. Build operators with the functions here
(:func:`downscale`, :func:`blur`, :func:`blur_kernel`, :func:`gray`, :func:`mask`,
:func:`noise`) or from a string (:func:`pulse_jax.degrade.parse`); :func:`compose` applies
them left to right::

    op = compose(blur(sigma=1.5), downscale(8, "bicubic"), gray())
    y = op(x)                                  # [B, H/8, W/8, 1]
    op.out_shape(x.shape)                      # the same shape, without computing
    x_back = adjoint(op, x.shape)(y)           # A^T y, from jax.linear_transpose

Per-face operators: operators of one structure (same static fields, same leaf shapes) stack
into one whose leaves have a leading face axis (:func:`stack`); ``jax.vmap`` over it and the
images applies face i's operator to face i.

Ordering rules (checked by :func:`compose`; docs/degradations.md): a mask marks missing
pixels of the observation, so only ``gray`` and ``noise`` may follow it; ``noise`` describes
the observation itself and so comes last, at most once.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any, Callable, ClassVar, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pulse_jax.degrade.downscale import (DEGRADATIONS, _check_factor, area_downscale,
                                         bicubic_downscale, gaussian_downscale)

__all__ = [
    "GRAY_WEIGHTS", "Blur", "Compose", "Downscale", "Gray", "Mask", "Noise", "Operator",
    "adjoint", "blur", "blur_kernel", "compose", "downscale", "flatten", "gaussian_psf",
    "gray", "has_placeholder", "mask", "noise", "read_psf", "stack",
]

#: Luma weights (R, G, B) of ITU-R BT.601 and BT.709.
GRAY_WEIGHTS = {"601": (0.299, 0.587, 0.114), "709": (0.2126, 0.7152, 0.0722)}

_DOWNSCALERS: dict[str, Callable[[jax.Array, int], jax.Array]] = {
    "bicubic": bicubic_downscale, "area": area_downscale, "gaussian": gaussian_downscale}


def _shape4(shape: Sequence[int]) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        raise ValueError(f"expected an image batch shape [B, H, W, C], got {shape}")
    return shape  # type: ignore[return-value]


def _float(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    return x.astype(jnp.promote_types(x.dtype, jnp.float32))


class Operator:
    """What every degradation operator has (the classes below are its pytree dataclasses).

    ``linear``: whether ``op`` is linear in ``x`` (then :func:`adjoint` applies).
    """

    linear: ClassVar[bool] = True

    def __call__(self, x: jax.Array) -> jax.Array:  # pragma: no cover - abstract
        raise NotImplementedError

    def out_shape(self, hr_shape: Sequence[int]) -> tuple[int, int, int, int]:
        """The observation's shape for an input of shape ``hr_shape`` ``[B, H, W, C]``;
        ValueError naming the problem if the operator cannot take that input."""
        raise NotImplementedError  # pragma: no cover - abstract

    def describe(self) -> str:
        """The operator in the grammar of :func:`pulse_jax.degrade.parse`."""
        raise NotImplementedError  # pragma: no cover - abstract

    def __str__(self) -> str:
        return self.describe()


@flax.struct.dataclass
class Downscale(Operator):
    """Downscale by an integer ``factor`` with ``kernel`` "bicubic" (PULSE's operator, bit
    for bit), "area" (block mean) or "gaussian" (Gaussian antialias, sigma ``(f-1)/2``)."""

    factor: int = flax.struct.field(pytree_node=False)
    kernel: str = flax.struct.field(pytree_node=False, default="bicubic")

    def __call__(self, x: jax.Array) -> jax.Array:
        return _DOWNSCALERS[self.kernel](x, self.factor)

    def out_shape(self, hr_shape):
        b, h, w, c = _shape4(hr_shape)
        f = self.factor
        if h % f or w % f:
            raise ValueError(f"{self.describe()}: image size {h}x{w} is not divisible by the "
                             f"factor {f}")
        return (b, h // f, w // f, c)

    def describe(self) -> str:
        return f"downscale(factor={self.factor},kernel={self.kernel})"


@flax.struct.dataclass
class Blur(Operator):
    """Convolution of every channel with a 2-D point-spread function (odd sides), reflect
    padding, output the input's size: ``y[i, j] = sum_uv k[u, v] x[i - u + r, j - v + r]``.

    ``kernel`` ``[kh, kw]`` is a leaf (per-face kernels of one size stack); ``sigma`` and
    ``source`` only describe where it came from."""

    kernel: jax.Array
    sigma: Optional[float] = flax.struct.field(pytree_node=False, default=None)
    source: str = flax.struct.field(pytree_node=False, default="")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _float(x)
        k = jnp.asarray(self.kernel, x.dtype)
        kh, kw = k.shape
        c = x.shape[-1]
        xp = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)), mode="reflect")
        # A convolution, not a correlation: flip the PSF (lax's conv correlates).
        rhs = jnp.broadcast_to(k[::-1, ::-1, None, None], (kh, kw, 1, c))
        return lax.conv_general_dilated(xp, rhs, (1, 1), "VALID",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=c, precision=lax.Precision.HIGHEST)

    def out_shape(self, hr_shape):
        b, h, w, c = _shape4(hr_shape)
        kh, kw = np.shape(self.kernel)[-2:]
        if kh // 2 >= h or kw // 2 >= w:
            raise ValueError(f"{self.describe()}: a {kh}x{kw} kernel needs an image larger "
                             f"than {kh // 2}x{kw // 2} pixels for its reflect padding, got "
                             f"{h}x{w}")
        return (b, h, w, c)

    def describe(self) -> str:
        if self.sigma is not None:
            return f"blur(sigma={self.sigma:g})"
        return f"blur(kernel={self.source or 'array'})"


@flax.struct.dataclass
class Gray(Operator):
    """RGB to one luma channel with ITU-R BT.601 or BT.709 weights: ``[B,H,W,3] -> [B,H,W,1]``."""

    standard: str = flax.struct.field(pytree_node=False, default="601")

    def __call__(self, x: jax.Array) -> jax.Array:
        x = _float(x)
        w = jnp.asarray(GRAY_WEIGHTS[self.standard], x.dtype)
        return jnp.einsum("bhwc,c->bhw", x, w, precision=lax.Precision.HIGHEST)[..., None]

    def out_shape(self, hr_shape):
        b, h, w, c = _shape4(hr_shape)
        if c != 3:
            raise ValueError(f"{self.describe()} needs 3 (RGB) channels, got {c}")
        return (b, h, w, 1)

    def describe(self) -> str:
        return f"gray(weights={self.standard})"


@flax.struct.dataclass
class Mask(Operator):
    """Missing pixels: ``y = m * x`` with ``mask`` m ``[H, W, 1]`` in {0, 1} (1 = observed).

    The data term is normalised by the observed pixels (docs/degradations.md). ``mask`` None
    is a placeholder (the runner's ``mask()``, filled per face from ``{name}_mask.png`` with
    :meth:`filled`); calling it raises."""

    mask: Optional[jax.Array] = None
    source: str = flax.struct.field(pytree_node=False, default="")

    @property
    def placeholder(self) -> bool:
        """The runner's ``mask()``: no mask yet, one is read for each face."""
        return self.mask is None

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mask is None:
            raise ValueError("mask() has no mask yet: give one (degrade.mask(array), "
                             "mask(file=...)), or let the runner read {name}_mask.png")
        x = _float(x)
        return x * jnp.asarray(self.mask, x.dtype)

    def out_shape(self, hr_shape):
        b, h, w, c = _shape4(hr_shape)
        if self.mask is not None:
            mh, mw = np.shape(self.mask)[-3:-1]
            if (mh, mw) != (h, w):
                raise ValueError(f"the mask is {mw}x{mh} (width x height) but the image it "
                                 f"applies to is {w}x{h}")
        return (b, h, w, c)

    def filled(self, m: Any, source: str = "") -> "Mask":
        """This placeholder with mask ``m`` (see :func:`mask`)."""
        return mask(m, source=source or self.source)

    def describe(self) -> str:
        return f"mask(file={self.source})" if self.source else "mask()"


@flax.struct.dataclass
class Noise(Operator):
    """The observation carries additive Gaussian noise of standard deviation ``sigma`` ([0, 1]
    units). Applying it is the identity (the search compares noiseless images); the data term
    reads ``sigma`` (floor and success threshold ``eps + sigma^2``, docs/degradations.md) and
    :meth:`sample` draws a noisy observation."""

    sigma: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        return _float(x)

    def sample(self, key: jax.Array, y: jax.Array) -> jax.Array:
        """``y + sigma * N(0, 1)`` (one draw per pixel), not clipped."""
        y = _float(y)
        return y + jnp.asarray(self.sigma, y.dtype) * jax.random.normal(key, y.shape, y.dtype)

    def out_shape(self, hr_shape):
        return _shape4(hr_shape)

    def describe(self) -> str:
        try:
            return f"noise(sigma={float(np.asarray(self.sigma)):g})"
        except TypeError:  # stacked per-face sigmas
            return "noise(sigma=per-face)"


@flax.struct.dataclass
class Compose(Operator):
    """``ops`` applied left to right (build with :func:`compose`, which checks the order)."""

    ops: tuple

    def __call__(self, x: jax.Array) -> jax.Array:
        for op in self.ops:
            x = op(x)
        return x

    def out_shape(self, hr_shape):
        shape = _shape4(hr_shape)
        for op in self.ops:
            shape = op.out_shape(shape)
        return shape

    def describe(self) -> str:
        return "|".join(op.describe() for op in self.ops)


# ------------------------------------------------------------------------------------------
# Constructors (they validate; the classes do not, so that pytree unflattening stays cheap)


def downscale(factor: int, kernel: str = "bicubic") -> Downscale:
    """:class:`Downscale` by integer ``factor >= 1`` with ``kernel`` bicubic|area|gaussian."""
    f = _check_factor(factor)
    if kernel not in DEGRADATIONS:
        raise ValueError(f"unknown downscale kernel {kernel!r}; valid: {', '.join(DEGRADATIONS)}")
    return Downscale(f, kernel)


def gaussian_psf(sigma: float, radius: Optional[int] = None) -> np.ndarray:
    """A normalised 2-D Gaussian ``[2r+1, 2r+1]`` float32, ``r = ceil(3 sigma)`` by default."""
    sigma = float(sigma)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"blur sigma must be a finite number > 0, got {sigma!r}")
    r = int(math.ceil(3 * sigma)) if radius is None else int(radius)
    t = np.exp(-0.5 * np.square(np.arange(-r, r + 1) / sigma))
    k = np.outer(t, t)
    return (k / k.sum()).astype(np.float32)


def blur(sigma: float) -> Blur:
    """Gaussian :class:`Blur` of standard deviation ``sigma`` HR pixels (radius ceil(3 sigma))."""
    return Blur(jnp.asarray(gaussian_psf(sigma)), sigma=float(sigma))


def blur_kernel(kernel: Any, source: str = "") -> Blur:
    """:class:`Blur` with a given PSF ``kernel`` ``[kh, kw]`` (odd sides, finite, used as given:
    normalise it to sum 1 if brightness should be kept). ``source`` names it in descriptions."""
    k = np.asarray(kernel, np.float32)
    if k.ndim != 2 or k.shape[0] % 2 == 0 or k.shape[1] % 2 == 0:
        raise ValueError(f"a blur kernel must be a 2-D array with odd sides, got shape {k.shape}")
    if not np.all(np.isfinite(k)):
        raise ValueError("the blur kernel contains NaN or infinite values")
    return Blur(jnp.asarray(k), source=source)


def gray(weights: str = "601") -> Gray:
    """:class:`Gray` with ITU-R BT.601 (default) or BT.709 luma weights."""
    weights = str(weights)
    if weights not in GRAY_WEIGHTS:
        raise ValueError(f"unknown gray weights {weights!r}; valid: {', '.join(GRAY_WEIGHTS)}")
    return Gray(weights)


def mask(m: Any = None, source: str = "") -> Mask:
    """:class:`Mask` from ``m`` ``[H, W]`` or ``[H, W, 1]`` (values >= 0.5 are observed), or the
    placeholder ``mask()`` when ``m`` is None. ValueError if no pixel is observed."""
    if m is None:
        return Mask(None, source=source)
    a = np.asarray(m, np.float32)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[-1] != 1:
        raise ValueError(f"a mask must be [H, W] or [H, W, 1], got shape {a.shape}")
    a = (a >= 0.5).astype(np.float32)
    if not a.any():
        raise ValueError(f"the mask{' ' + source if source else ''} observes no pixel "
                         "(1/white = observed, 0/black = missing)")
    return Mask(jnp.asarray(a), source=source)


def noise(sigma: float) -> Noise:
    """:class:`Noise` of standard deviation ``sigma >= 0`` in [0, 1] units."""
    s = float(sigma)
    if not (math.isfinite(s) and s >= 0):
        raise ValueError(f"noise sigma must be a finite number >= 0, got {sigma!r}")
    return Noise(jnp.float32(s))


def flatten(op: Operator) -> tuple[Operator, ...]:
    """The elementary operators of ``op`` in application order."""
    if isinstance(op, Compose):
        return tuple(o for inner in op.ops for o in flatten(inner))
    return (op,)


def has_placeholder(op: Optional[Operator]) -> bool:
    """Whether ``op`` holds a ``mask()`` placeholder (:attr:`Mask.placeholder`)."""
    return op is not None and any(isinstance(o, Mask) and o.placeholder for o in flatten(op))


def compose(*ops: Operator) -> Operator:
    """``ops`` applied left to right (nested compositions are flattened; one op is returned
    as is). ValueError if an operator follows a mask other than gray/noise, or if noise is
    not last or appears twice."""
    flat = tuple(o for op in ops for o in flatten(op))
    if not flat:
        raise ValueError("compose() needs at least one operator")
    for op in flat:
        if not isinstance(op, Operator):
            raise ValueError(f"not a degradation operator: {op!r}")
    if sum(isinstance(o, Mask) for o in flat) > 1:
        raise ValueError("at most one mask per degradation")
    for i, op in enumerate(flat):
        later = flat[i + 1:]
        if isinstance(op, Noise) and later:
            raise ValueError(f"noise(...) describes the observation and must come last, found "
                             f"{later[0].describe()} after it")
        if isinstance(op, Mask) and any(not isinstance(o, (Gray, Noise)) for o in later):
            bad = next(o for o in later if not isinstance(o, (Gray, Noise)))
            raise ValueError(f"only gray() and noise() may follow a mask (it marks missing "
                             f"pixels of the observation), found {bad.describe()}; put the "
                             f"mask after the blur/downscale, at the observation's size")
    return flat[0] if len(flat) == 1 else Compose(flat)


def stack(ops: Sequence[Operator]) -> Operator:
    """Per-face operators as one whose leaves have a leading face axis ``[N, ...]``.

    ValueError unless all have the same structure (static fields) and leaf shapes."""
    ops = list(ops)
    if not ops:
        raise ValueError("no operators to stack")
    tree0 = jax.tree_util.tree_structure(ops[0])
    shapes0 = [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(ops[0])]
    for i, op in enumerate(ops[1:], 1):
        if (jax.tree_util.tree_structure(op) != tree0 or
                [np.shape(leaf) for leaf in jax.tree_util.tree_leaves(op)] != shapes0):
            raise ValueError(f"per-face operators must share one structure and leaf shapes: "
                             f"face 0 has {ops[0].describe()}, face {i} has {op.describe()}")
    return jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *ops)


def adjoint(op: Operator, hr_shape: Sequence[int],
            dtype: Any = jnp.float32) -> Callable[[jax.Array], jax.Array]:
    """``y -> A^T y`` for a linear ``op`` on inputs of shape ``hr_shape``
    (``jax.linear_transpose``). ValueError for a non-linear operator."""
    if not all(o.linear for o in flatten(op)):
        raise ValueError(f"{op.describe()} is not linear; it has no adjoint")
    op.out_shape(hr_shape)
    t = jax.linear_transpose(op, jax.ShapeDtypeStruct(_shape4(hr_shape), dtype))
    return lambda y: t(y)[0]


def read_psf(path: str) -> Blur:
    """A :class:`Blur` whose kernel is the 2-D array in the ``.npy`` file ``path``."""
    p = pathlib.Path(path).expanduser()
    if p.suffix.lower() != ".npy":
        raise ValueError(f"blur(kernel=...) reads a 2-D .npy array, got {path!r}")
    try:
        k = np.load(p, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read the blur kernel {path!r}: {e}") from None
    return blur_kernel(k, source=str(path))
