"""Parity of the degradation operators with the reference's BicubicDownSample (fixture
section 5) and with a float64 NumPy transcription of its formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax import degrade
from pulse_jax.degrade import (
    area_downscale,
    bicubic_downscale,
    bicubic_kernel,
    bicubic_matrix,
    cubic,
    make_degradation,
)

FIXTURE_FACTORS = (2, 4, 8, 16, 32, 64)
BICUBIC_ATOL = 1e-5  # tests/data/README.md: bicubic/x_down_*, x1024_down_*
KERNEL_ATOL = 1e-7  # tests/data/README.md: bicubic/kernel_f*


def nchw_to_nhwc(x):
    return np.transpose(x, (0, 2, 3, 1))


def bicubic_reference_f64(x: np.ndarray, f: int) -> np.ndarray:
    """Float64 transcription of the reference: reflect pad, 1-D conv stride f, rows then columns.

    x: [B, H, W, C] -> [B, H/f, W/f, C]. Independent of degrade.py (taps from the formula).
    """

    def c(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t**3 - 2.5 * t**2 + 1
        if t < 2:
            return -0.5 * t**3 + 2.5 * t**2 - 4 * t + 2
        return 0.0

    k = np.array([c((i - 2 * f + 0.5) / f) for i in range(4 * f)])
    k /= k.sum()
    before, after = 3 * f // 2, 3 * f - 3 * f // 2

    def one_axis(x, axis):
        pad = [(0, 0)] * x.ndim
        pad[axis] = (before, after)
        xp = np.pad(x, pad, mode="reflect")  # np.pad reflect == torch reflect (edge excluded)
        n_out = x.shape[axis] // f
        xp = np.moveaxis(xp, axis, 0)
        out = np.stack([np.tensordot(k, xp[s * f : s * f + 4 * f], axes=1) for s in range(n_out)])
        return np.moveaxis(out, 0, axis)

    return one_axis(one_axis(x.astype(np.float64), 1), 2)


def image_1024() -> np.ndarray:
    """The fixture's deterministic [1, 3, 1024, 1024] test image (NCHW), built in int64."""
    i = np.arange(1024, dtype=np.int64)[:, None]
    j = np.arange(1024, dtype=np.int64)[None, :]
    chans = [(3 * i * i + 5 * j * j + 7 * i * j + 11 * i + 13 * j + 17 * c) % 251 for c in range(3)]
    return (np.stack(chans)[None].astype(np.float32) / np.float32(250)).astype(np.float32)


# --- kernel -----------------------------------------------------------------------------------


@pytest.mark.parametrize("f", FIXTURE_FACTORS)
def test_kernel_matches_reference(ref, f):
    k = bicubic_kernel(f)
    assert k.dtype == np.float32 and k.shape == (4 * f,)
    np.testing.assert_allclose(k, ref[f"bicubic/kernel_f{f}"], rtol=0, atol=KERNEL_ATOL)


def test_kernel_factor1_is_not_identity():
    np.testing.assert_array_equal(bicubic_kernel(1), np.array([-1, 9, 9, -1], np.float32) / 16)


def test_kernel_sums_to_one_and_is_symmetric():
    for f in (1, 3, 5, 7):
        k = bicubic_kernel(f)
        np.testing.assert_allclose(k.sum(), 1.0, atol=1e-6)
        np.testing.assert_array_equal(k, k[::-1])


def test_cubic_values():
    np.testing.assert_allclose(cubic(np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -1.5])),
                               [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, -0.0625])
    assert cubic(np.float32(0.25)).dtype == np.float32
    assert cubic(1).dtype == np.float64


# --- fixture outputs --------------------------------------------------------------------------


@pytest.mark.parametrize("f", FIXTURE_FACTORS)
def test_downscale_matches_reference(ref, f):
    x = nchw_to_nhwc(ref["bicubic/x"])
    y = np.asarray(bicubic_downscale(jnp.asarray(x), f))
    want = nchw_to_nhwc(ref[f"bicubic/x_down_f{f}"])
    assert y.shape == want.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, want, rtol=0, atol=BICUBIC_ATOL)


def test_1024_image_is_built_right(ref):
    x = image_1024()
    np.testing.assert_array_equal(x[:, :, :8, :8], ref["bicubic/x1024_corner"])
    np.testing.assert_allclose(x.sum(dtype=np.float64), ref["bicubic/x1024_sum"], rtol=1e-12)


@pytest.mark.parametrize("f", (32, 64))
def test_1024_downscale_matches_reference(ref, f):
    x = jnp.asarray(nchw_to_nhwc(image_1024()))
    y = np.asarray(jax.jit(make_degradation("bicubic", f))(x))
    np.testing.assert_allclose(y, nchw_to_nhwc(ref[f"bicubic/x1024_down_f{f}"]),
                               rtol=0, atol=BICUBIC_ATOL)


# --- cases the fixture does not cover -----------------------------------------------------------


@pytest.mark.parametrize(
    "f,shape",
    [
        (3, (2, 30, 45, 3)),
        (5, (1, 40, 25, 1)),  # C = 1, non-square
        (1, (3, 7, 9, 2)),  # factor 1 (not the identity), C = 2
        (4, (2, 4, 8, 3)),  # one output row: the pad (6) exceeds the size, reflection repeats
        (2, (1, 2, 2, 1)),
        (7, (2, 21, 14, 4)),  # odd factor: uneven padding 10 / 11
    ],
)
def test_downscale_matches_float64_formula(f, shape):
    x = np.random.default_rng(f).uniform(-0.2, 1.2, shape).astype(np.float32)
    y = np.asarray(bicubic_downscale(jnp.asarray(x), f))
    want = bicubic_reference_f64(x, f)
    assert y.shape == want.shape == (shape[0], shape[1] // f, shape[2] // f, shape[3])
    np.testing.assert_allclose(y, want, rtol=0, atol=BICUBIC_ATOL)


def test_batch_and_channels_are_independent():
    x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 32, 32, 4)).astype(np.float32))
    full = bicubic_downscale(x, 8)
    for b in range(3):
        for c in range(4):
            one = bicubic_downscale(x[b : b + 1, :, :, c : c + 1], 8)
            np.testing.assert_allclose(one[0, :, :, 0], full[b, :, :, c], rtol=0, atol=1e-6)


def test_jit_vmap_grad():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(size=(2, 24, 24, 3)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(2, 8, 8, 3)).astype(np.float32))
    y = bicubic_downscale(x, 3)
    np.testing.assert_allclose(jax.jit(bicubic_downscale, static_argnums=1)(x, 3), y, atol=1e-6)
    yv = jax.vmap(lambda xi: bicubic_downscale(xi[None], 3)[0])(x)
    np.testing.assert_allclose(yv, y, atol=1e-6)
    # The operator is linear: the gradient of <D(x), w> is D^T w = R^T w C per channel.
    g = jax.grad(lambda x: jnp.sum(bicubic_downscale(x, 3) * w))(x)
    r = bicubic_matrix(24, 3).astype(np.float64)
    want = np.einsum("sh,tw,bstc->bhwc", r, r, np.asarray(w, np.float64))
    np.testing.assert_allclose(g, want, rtol=0, atol=1e-5)


def test_low_precision_and_integer_inputs_compute_in_float32():
    x = np.random.default_rng(2).uniform(size=(1, 8, 8, 3)).astype(np.float32)
    assert bicubic_downscale(jnp.asarray(x, jnp.bfloat16), 2).dtype == jnp.float32
    assert bicubic_downscale(jnp.asarray(x > 0.5, jnp.int32), 2).dtype == jnp.float32


def test_area():
    x = np.random.default_rng(3).uniform(size=(2, 12, 18, 1)).astype(np.float32)
    want = x.reshape(2, 4, 3, 6, 3, 1).mean(axis=(2, 4))
    np.testing.assert_allclose(make_degradation("area", 3)(jnp.asarray(x)), want, atol=1e-6)
    np.testing.assert_array_equal(area_downscale(jnp.asarray(x), 1), x)


def test_make_degradation_bicubic_is_the_reference_operator():
    x = jnp.asarray(np.random.default_rng(4).uniform(size=(1, 16, 16, 3)).astype(np.float32))
    d = make_degradation("bicubic", np.int64(4))
    np.testing.assert_array_equal(d(x), bicubic_downscale(x, 4))


@pytest.mark.parametrize("factor", [0, -2, 2.5, 2.0, "2", True, None])
def test_bad_factor(factor):
    with pytest.raises(ValueError, match="integer >= 1"):
        make_degradation("bicubic", factor)
    with pytest.raises(ValueError, match="integer >= 1"):
        bicubic_kernel(factor)


def test_unknown_name():
    with pytest.raises(ValueError, match="valid names: bicubic, area"):
        make_degradation("lanczos", 4)


@pytest.mark.parametrize("name", degrade.DEGRADATIONS)
def test_size_not_divisible(name):
    d = make_degradation(name, 4)
    with pytest.raises(ValueError, match="not divisible"):
        d(jnp.zeros((1, 16, 18, 3)))
    with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
        d(jnp.zeros((16, 16, 3)))
