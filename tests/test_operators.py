"""Degradation operators as pytrees: each operator against an independent formula, adjoints
(<A x, y> = <x, A^T y>), per-face operators under vmap, composition rules, the string
grammar and its errors, and the observation-space data term."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from pulse_jax import degrade as D

RNG = np.random.default_rng(0)
X = RNG.random((2, 24, 24, 3)).astype(np.float32)


def _dot(a, b) -> float:
    return float(np.vdot(np.asarray(a, np.float64), np.asarray(b, np.float64)))


LINEAR = {
    "bicubic": D.downscale(4, "bicubic"),
    "area": D.downscale(3, "area"),
    "gaussian": D.downscale(4, "gaussian"),
    "blur": D.blur(1.5),
    "psf": D.blur_kernel(RNG.random((3, 5))),  # asymmetric: the adjoint is the flipped PSF
    "gray601": D.gray(),
    "gray709": D.gray("709"),
    "mask": D.mask(RNG.random((24, 24)) > 0.4),
    "noise": D.noise(0.1),
    "composition": D.compose(D.blur(1.0), D.downscale(2, "gaussian"), D.gray(),
                             D.mask(RNG.random((12, 12)) > 0.3), D.noise(0.01)),
}


@pytest.mark.parametrize("name", sorted(LINEAR))
def test_adjoint(name):
    op = LINEAR[name]
    y = RNG.standard_normal(op.out_shape(X.shape)).astype(np.float32)
    aty = np.asarray(D.adjoint(op, X.shape)(jnp.asarray(y)))
    assert aty.shape == X.shape
    lhs, rhs = _dot(op(X), y), _dot(X, aty)
    assert abs(lhs - rhs) <= 1e-5 * np.linalg.norm(X) * np.linalg.norm(y), (lhs, rhs)


def test_adjoint_is_the_matrix_transpose():
    """For a small blur+downscale the adjoint equals the transpose of the explicit matrix."""
    op = D.compose(D.blur_kernel(RNG.random((3, 3))), D.downscale(2, "gaussian"))
    shape = (1, 6, 6, 1)
    basis = np.eye(36, dtype=np.float32).reshape(36, 6, 6, 1)
    a = np.stack([np.asarray(op(b[None])).ravel() for b in basis], axis=1)  # [9, 36]
    adj = D.adjoint(op, shape)
    at = np.stack([np.asarray(adj(e.reshape(1, 3, 3, 1))).ravel()
                   for e in np.eye(9, dtype=np.float32)], axis=1)  # [36, 9]
    np.testing.assert_allclose(at, a.T, atol=1e-6)


def test_bicubic_operator_is_the_reference_function():
    x = jnp.asarray(RNG.random((1, 64, 64, 3)), jnp.float32)
    np.testing.assert_array_equal(D.parse("downscale(factor=8,kernel=bicubic)")(x),
                                  D.bicubic_downscale(x, 8))
    np.testing.assert_array_equal(D.downscale(4, "area")(x), D.area_downscale(x, 4))


def test_gaussian_downscale_formula():
    f, sigma = 4, D.gaussian_sigma(4)
    assert sigma == 1.5
    x = RNG.random((1, 32, 32, 1)).astype(np.float32)
    y = np.asarray(D.downscale(f, "gaussian")(x))
    # An interior sample, far from the borders: a Gaussian-weighted mean at the block centre.
    s, t = 3, 4
    c = lambda i: (i + 0.5) * f - 0.5
    g = lambda p, ctr: np.exp(-0.5 * ((p - ctr) / sigma) ** 2)
    p = np.arange(32)
    w = np.outer(g(p, c(s)), g(p, c(t)))
    np.testing.assert_allclose(y[0, s, t, 0], (w * x[0, :, :, 0]).sum() / w.sum(), rtol=1e-5)
    np.testing.assert_allclose(D.gaussian_matrix(32, f).sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_array_equal(D.gaussian_matrix(5, 1), np.eye(5))


def test_blur_is_a_convolution_with_the_psf():
    k = RNG.random((3, 5)).astype(np.float32)
    delta = np.zeros((1, 9, 9, 2), np.float32)
    delta[0, 4, 4, :] = 1
    out = np.asarray(D.blur_kernel(k)(delta))
    np.testing.assert_allclose(out[0, 3:6, 2:7, 0], k, atol=1e-7)  # the PSF itself, not flipped
    np.testing.assert_allclose(out[0, 3:6, 2:7, 1], k, atol=1e-7)
    const = np.full((1, 16, 16, 3), 0.3, np.float32)
    np.testing.assert_allclose(D.blur(2.0)(const), const, atol=1e-6)  # normalised, reflect pad
    assert D.gaussian_psf(1.5).shape == (11, 11)


def test_gray_weights():
    y = np.asarray(D.gray("709")(X))
    np.testing.assert_allclose(y[..., 0], X @ np.array([0.2126, 0.7152, 0.0722], np.float32),
                               atol=1e-6)
    np.testing.assert_allclose(D.gray()(X)[..., 0], X @ np.array([0.299, 0.587, 0.114]),
                               atol=1e-6)


def test_mask_and_noise():
    m = RNG.random((24, 24)) > 0.5
    np.testing.assert_array_equal(D.mask(m)(X), X * m[None, :, :, None])
    np.testing.assert_array_equal(D.noise(0.1)(X), X)  # the noise is in the data model
    y = np.asarray(D.noise(0.1).sample(jax.random.PRNGKey(0), np.zeros((4, 32, 32, 3))))
    assert abs(y.std() - 0.1) < 0.005


@pytest.mark.parametrize("op,shape,match", [
    (D.gray(), (1, 8, 8, 1), "needs 3"),
    (D.downscale(3), (1, 8, 8, 3), "not divisible"),
    (D.mask(np.ones((8, 8))), (1, 16, 16, 3), "mask is 8x8"),
    (D.blur(3.0), (1, 8, 8, 3), "reflect padding"),
])
def test_out_shape_errors(op, shape, match):
    with pytest.raises(ValueError, match=match):
        op.out_shape(shape)


def test_out_shape():
    op = D.parse("blur(sigma=1)|downscale(factor=4,kernel=area)|gray(weights=709)")
    assert op.out_shape((5, 32, 32, 3)) == (5, 8, 8, 1) == op(np.zeros((5, 32, 32, 3))).shape


def test_per_face_operators_under_vmap():
    """A stack of per-face operators, vmapped over faces, equals one face at a time."""
    n = 3
    ops = [D.compose(D.blur_kernel(RNG.random((5, 5))), D.downscale(2, "bicubic"), D.gray(),
                     D.mask(RNG.random((12, 12)) > 0.3), D.noise(0.01 * (i + 1)))
           for i in range(n)]
    x = jnp.asarray(RNG.random((n, 24, 24, 3)), jnp.float32)
    stacked = D.stack(ops)
    assert np.shape(D.observed_mask(stacked)) == (n, 12, 12, 1)
    got = jax.jit(jax.vmap(lambda o, xi: o(xi[None])[0]))(stacked, x)
    want = np.concatenate([np.asarray(op(x[i:i + 1])) for i, op in enumerate(ops)])
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(D.apply_rows(stacked, x), want, atol=1e-6)
    np.testing.assert_allclose(D.noise_variance(stacked), [1e-4, 4e-4, 9e-4], rtol=1e-5)
    with pytest.raises(ValueError, match="one structure"):
        D.stack([ops[0], D.compose(D.blur(1.0), D.downscale(2))])


def test_data_mse_is_normalised_by_the_observed_pixels():
    m = np.zeros((24, 24), bool)
    m[:, :6] = True
    op = D.mask(m)
    y_hat = np.zeros_like(X)
    y = np.asarray(op(X))
    want = np.mean(np.square(X[:, :, :6, :]), axis=(1, 2, 3))
    np.testing.assert_allclose(D.data_mse(op, y_hat, y), want, rtol=1e-6)
    np.testing.assert_allclose(D.observation_l2(op, X, y), 0, atol=1e-12)


def test_compose_order_rules():
    assert isinstance(D.compose(D.gray()), D.Gray)
    nested = D.compose(D.compose(D.blur(1.0), D.downscale(2)), D.gray())
    assert [type(o).__name__ for o in D.flatten(nested)] == ["Blur", "Downscale", "Gray"]
    with pytest.raises(ValueError, match="must come last"):
        D.compose(D.noise(0.1), D.gray())
    with pytest.raises(ValueError, match="may follow a mask"):
        D.compose(D.mask(np.ones((8, 8))), D.downscale(2))
    with pytest.raises(ValueError, match="at most one mask"):
        D.compose(D.mask(np.ones((8, 8))), D.mask(np.ones((8, 8))))


@pytest.mark.parametrize("text", [
    "downscale(factor=8,kernel=bicubic)", "downscale(factor=2,kernel=area)",
    "downscale(factor=4,kernel=gaussian)", "blur(sigma=1.5)", "gray(weights=709)",
    "noise(sigma=0.03)", "mask()",
    "blur(sigma=1.5)|downscale(factor=8,kernel=bicubic)|gray(weights=601)|noise(sigma=0.01)",
])
def test_parse_round_trip(text):
    assert D.parse(text).describe() == text
    assert D.parse(text.replace(",", " , ").replace("|", " | ")).describe() == text


def test_parse_defaults_and_files(tmp_path):
    assert D.parse("downscale(factor=4)") == D.downscale(4, "bicubic")
    assert D.parse("gray") == D.gray("601")
    psf = RNG.random((3, 3)).astype(np.float32)
    np.save(tmp_path / "psf.npy", psf)
    op = D.parse(f"blur(kernel={tmp_path / 'psf.npy'})")
    np.testing.assert_array_equal(op.kernel, psf)
    m = np.zeros((16, 16), np.uint8)
    m[4:, :] = 255
    Image.fromarray(m).save(tmp_path / "m.png")
    mask = D.parse(f"downscale(factor=2)|mask(file={tmp_path / 'm.png'})")
    np.testing.assert_array_equal(D.observed_mask(mask)[..., 0], m > 0)


@pytest.mark.parametrize("text,match", [
    ("", "empty degradation"),
    ("  ", "empty degradation"),
    ("downscale(factor=2)|", "stray"),
    ("lanczos(factor=2)", "unknown operator 'lanczos'"),
    ("downscale()", "needs factor"),
    ("downscale(factor=two)", "not an integer"),
    ("downscale(factor=2.5)", "not an integer"),
    ("downscale(factor=0)", "integer >= 1"),
    ("downscale(factor=2,kernel=nearest)", "unknown downscale kernel"),
    ("downscale(factor=2,factor=3)", "given twice"),
    ("downscale(factr=2)", "no argument 'factr'"),
    ("downscale(factor)", "not key=value"),
    ("blur(sigma=1", "not name"),
    ("blur()", "exactly one of"),
    ("blur(sigma=0)", "> 0"),
    ("blur(kernel=psf.txt)", ".npy"),
    ("blur(kernel=missing.npy)", "cannot read"),
    ("gray(weights=2020)", "unknown gray weights"),
    ("noise()", "needs sigma"),
    ("noise(sigma=-0.1)", ">= 0"),
    ("noise(sigma=0.1)|gray()", "must come last"),
    ("mask()|blur(sigma=1)", "may follow a mask"),
    ("mask(file=missing.png)", "cannot read the mask"),
])
def test_parse_errors(text, match):
    with pytest.raises(ValueError, match=match):
        D.parse(text)


def test_parse_rejects_non_strings_and_empty_masks(tmp_path):
    with pytest.raises(ValueError, match="must be a str"):
        D.parse(3)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "black.png")
    with pytest.raises(ValueError, match="observes no pixel"):
        D.parse(f"mask(file={tmp_path / 'black.png'})")
    with pytest.raises(ValueError, match="has no mask yet"):
        D.mask()(X)


def test_loss_terms_in_observation_space():
    """The loss reads each row's operator from an Observation: mask-normalised L2 and L1
    with floors eps + sigma^2 and eps + sigma sqrt(2/pi)."""
    from pulse_jax import losses
    m = RNG.random((12, 12)) > 0.5
    op = D.compose(D.downscale(2, "area"), D.mask(m), D.noise(0.05))
    y = np.asarray(op(X)) + 0.01 * RNG.standard_normal((2, 12, 12, 3)).astype(np.float32)
    obs = D.Observation(jnp.asarray(y), D.per_row(op, 2))
    loss = losses.make_loss("1*L2+1*L1", 1e-3, D.make_degradation("bicubic", 2))
    far = X + 0.3  # far from the observation: both terms above their floors
    _, terms, lr = loss(jnp.asarray(far), obs, jnp.zeros((2, 1, 4)))
    d = (np.asarray(op(far)) - y) * m[None, :, :, None]
    np.testing.assert_allclose(terms["L2"], (d ** 2).sum((1, 2, 3)) / (3 * m.sum()), rtol=1e-5)
    np.testing.assert_allclose(terms["L1"], 10 * np.abs(d).sum((1, 2, 3)) / (3 * m.sum()),
                               rtol=1e-5)
    _, near, _ = loss(jnp.asarray(X), obs, jnp.zeros((2, 1, 4)))  # within the noise: floors
    np.testing.assert_allclose(near["L2"], 1e-3 + 0.05 ** 2, rtol=1e-6)
    np.testing.assert_allclose(near["L1"], 10 * (1e-3 + 0.05 * np.sqrt(2 / np.pi)), rtol=1e-6)
