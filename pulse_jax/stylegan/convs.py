"""The generator's convolutions, NHWC / HWIO: stride-1 convs, x2 upsampling convs, the blur.

Two ways to compute an upsampling conv (nearest x2, then a 'same' 3x3 conv), one function:

* ``"direct"``: literally that, the reference's arithmetic;
* ``"subpixel"``: each of the four output phases is a 2x2 conv of the low-resolution input
  whose taps are sums of the 3x3 taps; all four run as one 2x2 conv with four times the
  output channels, then interleave. 2.25x fewer multiply-adds, equal up to float rounding.

And two ways to hold the weights:

* raw: kernels as stored, scaled (and flipped, and folded for "subpixel") at every call;
  fully differentiable, what training uses;
* prepared (:func:`prepare_conv`): that weight arithmetic done once, plus the kernel that
  the input gradient needs, so a loop that calls the generator many times with frozen
  weights (the PULSE search) pays for neither per step. :func:`conv_prepared` is
  differentiable in ``x`` and to first order in ``w``; ``w_t`` is treated as a constant.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

UPCONVS = ("direct", "subpixel")
_DIMS = ("NHWC", "HWIO", "NHWC")

# Row (and column) taps of the sub-pixel form: output phase a of a nearest-x2-then-3x3 conv
# sees input rows (i - 1 + a, i + a) through these sums of the 3x3 kernel's rows.
_PHASE_TAPS = (((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)),
               ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
_VALID = ((0, 0), (0, 0))

Padding = tuple[tuple[int, int], tuple[int, int]]


def _conv(x: jax.Array, kernel: jax.Array, padding: Padding) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_DIMS)


def _pad1(x: jax.Array) -> jax.Array:
    """Zero-pad H and W by one on each side."""
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def same_padding(kernel_size: int) -> Padding:
    p = kernel_size // 2
    return ((p, p), (p, p))


def conv2d(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Stride-1 'same' cross-correlation (torch ``conv2d`` semantics); kernel HWIO."""
    return _conv(x, kernel, same_padding(kernel.shape[0]))


def upsample_nearest2(x: jax.Array) -> jax.Array:
    """``[B, H, W, C] -> [B, 2H, 2W, C]``, each pixel repeated into a 2x2 block."""
    b, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (b, h, 2, w, 2, c))
    return x.reshape(b, 2 * h, 2 * w, c)


def blur(x: jax.Array) -> jax.Array:
    """Depthwise ``[1,2,1] x [1,2,1] / 16`` with zero padding 1, as shifted adds.

    The taps are powers of two, so each product is exact; written as slices XLA fuses it
    into one memory-bound pass instead of a depthwise convolution.
    """
    p = _pad1(x)
    v = p[:, :-2] + 2.0 * p[:, 1:-1] + p[:, 2:]
    h = v[:, :, :-2] + 2.0 * v[:, :, 1:-1] + v[:, :, 2:]
    return h * (1.0 / 16.0)


def subpixel_kernel(kernel: jax.Array) -> jax.Array:
    """3x3 kernel ``[3, 3, I, O]`` -> 2x2 phase kernel ``[2, 2, I, 4 * O]``, outputs (a, b, o)."""
    k, cin, cout = kernel.shape[0], kernel.shape[2], kernel.shape[3]
    if k != 3 or kernel.shape[1] != 3:
        raise ValueError(f"the sub-pixel form is derived for 3x3 kernels, got {kernel.shape[:2]}")
    taps = jnp.asarray(_PHASE_TAPS, kernel.dtype)                       # [2 phase, 2 tap, 3]
    return jnp.einsum("apy,bqx,yxio->pqiabo", taps, taps, kernel).reshape(2, 2, cin, 4 * cout)


def interleave_phases(y: jax.Array) -> jax.Array:
    """``[B, H+1, W+1, 4*O]`` phase outputs -> ``[B, 2H, 2W, O]``.

    Phase (a, b) of output pixel (2i + a, 2j + b) is ``y[i + a, j + b, (a, b)]``.
    """
    b, h1, w1, c4 = y.shape
    h, w, cout = h1 - 1, w1 - 1, c4 // 4
    y = y.reshape(b, h1, w1, 2, 2, cout)
    rows = [jnp.stack([y[:, a:a + h, c:c + w, a, c] for c in (0, 1)], axis=3) for a in (0, 1)]
    return jnp.stack(rows, axis=2).reshape(b, 2 * h, 2 * w, cout)


def upsample_conv_direct(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """Nearest x2, then a 'same' 3x3 conv (the reference's arithmetic).

    ``x [B, H, W, I]``, ``kernel [3, 3, I, O]`` -> ``[B, 2H, 2W, O]``.
    """
    return conv2d(upsample_nearest2(x), kernel)


def upsample_conv_subpixel(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """The same function as :func:`upsample_conv_direct` with 2.25x fewer multiply-adds:
    ``16 (H+1)(W+1)`` instead of ``36 H W`` per channel pair (see the module doc).

    The input is padded before an unpadded 2x2 conv, rather than the conv padding it: its
    input gradient is then a padded 2x2 conv, which XLA:CPU runs through its own
    convolution instead of a library kernel that is slow for 2x2 (docs/performance.md).
    """
    return interleave_phases(_conv(_pad1(x), subpixel_kernel(kernel), _VALID))


def upsample_conv(x: jax.Array, kernel: jax.Array, upconv: str) -> jax.Array:
    """Nearest x2 + 3x3 conv computed the ``upconv`` way ("direct" or "subpixel")."""
    if upconv == "direct":
        return upsample_conv_direct(x, kernel)
    if upconv == "subpixel":
        return upsample_conv_subpixel(x, kernel)
    raise ValueError(f"upconv must be one of {UPCONVS}, got {upconv!r}")


# ----------------------------------------------------------------------------------------
# Prepared kernels.


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def conv_prepared(x: jax.Array, w: jax.Array, w_t: jax.Array, padding: Padding) -> jax.Array:
    """``conv(x, w)`` whose input gradient is ``conv(g, w_t)``, with ``w_t`` from
    :func:`transpose_kernel`: given, so XLA need not transpose ``w`` at every call."""
    return _conv(x, w, padding)


def _conv_prepared_fwd(x, w, w_t, padding):
    return _conv(x, w, padding), (x, w, w_t)


def _conv_prepared_bwd(padding, res, g):
    x, w, w_t = res
    # A stride-1 conv padded (lo, hi) with a k-tap kernel has as input gradient the conv of
    # the output gradient with the flipped, transposed kernel, padded (k-1-lo, k-1-hi).
    pad_t = tuple((k - 1 - lo, k - 1 - hi) for k, (lo, hi) in zip(w.shape[:2], padding))
    dx = _conv(g, w_t, pad_t)
    dw = jax.vjp(lambda w: _conv(x, w, padding), w)[1](g)[0]  # dead code unless asked for
    return dx, dw, jnp.zeros_like(w_t)


conv_prepared.defvjp(_conv_prepared_fwd, _conv_prepared_bwd)


def transpose_kernel(w: jax.Array) -> jax.Array:
    """HWIO ``w`` -> the HWIO kernel of its input gradient (flipped, in/out swapped)."""
    return jnp.swapaxes(w[::-1, ::-1], 2, 3)


def prepare_conv(w: jax.Array, up: bool, upconv: str) -> dict[str, jax.Array]:
    """``{"w", "w_t"}`` for :func:`apply_prepared` from an effective (scaled) HWIO kernel."""
    if up and upconv == "subpixel":
        w = subpixel_kernel(w)
    elif upconv not in UPCONVS:
        raise ValueError(f"upconv must be one of {UPCONVS}, got {upconv!r}")
    return {"w": w, "w_t": transpose_kernel(w)}


def apply_prepared(x: jax.Array, prepared: dict[str, jax.Array], up: bool,
                   upconv: str) -> jax.Array:
    """The conv (``up``: the x2 upsampling conv) of :func:`prepare_conv`'s kernels, no bias."""
    w, w_t = prepared["w"], prepared["w_t"]
    if not up:
        return conv_prepared(x, w, w_t, same_padding(w.shape[0]))
    if upconv == "subpixel":  # padded first, as in upsample_conv_subpixel
        return interleave_phases(conv_prepared(_pad1(x), w, w_t, _VALID))
    return conv_prepared(upsample_nearest2(x), w, w_t, same_padding(w.shape[0]))
