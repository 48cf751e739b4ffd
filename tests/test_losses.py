"""Parity of the loss terms with the reference's LossBuilder (fixture section 6), and the
loss-string parser."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax import degrade
from pulse_jax.degrade import make_degradation
from pulse_jax.losses import DEFAULT_LOSS, geocross, l1, l2, make_loss, parse_loss

EPS = 2e-3  # the fixture's (and PULSE's default) eps
SCALAR_RTOL = 1e-5  # tests/data/README.md: loss scalars
GEN_LR_ATOL = 5e-5  # tests/data/README.md: loss/gen_im_lr
ALL3 = "100*L2+0.05*GEOCROSS+2*L1"


def nhwc(x):
    return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


@pytest.fixture(scope="module")
def inputs(ref):
    return {
        "gen": nhwc(ref["synthesis_io/image01"]),
        "ref_lr": nhwc(ref["loss/ref_lr"]),
        "lat12": jnp.asarray(ref["synthesis_io/dlatents"]),
        "lat18": jnp.asarray(ref["loss/latent18"]),
    }


def test_gen_im_lr(ref, inputs):
    lr = make_degradation("bicubic", 8)(inputs["gen"])
    np.testing.assert_allclose(lr, nhwc(ref["loss/gen_im_lr"]), rtol=0, atol=GEN_LR_ATOL)


@pytest.mark.parametrize(
    "key,loss_str,latent",
    [
        ("default", DEFAULT_LOSS, "lat12"),
        ("default_lat18", DEFAULT_LOSS, "lat18"),
        ("all3", ALL3, "lat12"),
        ("all3_lat18", ALL3, "lat18"),
    ],
)
def test_loss_scalars(ref, inputs, key, loss_str, latent):
    loss = jax.jit(make_loss(loss_str, EPS, make_degradation("bicubic", 8)))
    total, terms, lr_image = loss(inputs["gen"], inputs["ref_lr"], inputs[latent])
    assert total.shape == (2,) and lr_image.shape == (2, 16, 16, 3)
    # The reference sums every term over the batch; ours are per face.
    np.testing.assert_allclose(total.sum(), ref[f"loss/{key}/total"], rtol=SCALAR_RTOL)
    assert set(terms) == {name for _, name in parse_loss(loss_str)}
    for name, value in terms.items():
        assert value.shape == (2,)
        np.testing.assert_allclose(value.sum(), ref[f"loss/{key}/{name}"], rtol=SCALAR_RTOL)
    # Sample 0's MSE is ~1e-4 < eps: the clamp is active and L2 is exactly eps.
    assert float(terms["L2"][0]) == np.float32(EPS)


def test_default_gradients(ref, inputs):
    loss = make_loss(DEFAULT_LOSS, EPS, make_degradation("bicubic", 8))
    grad_gen, grad_lat = jax.jit(
        jax.grad(lambda g, w: loss(g, inputs["ref_lr"], w)[0].sum(), argnums=(0, 1))
    )(inputs["gen"], inputs["lat12"])
    for got, key in ((grad_gen, "grad_gen_im"), (grad_lat, "grad_latent")):
        want = ref[f"loss/default/{key}"]
        if want.ndim == 4:
            want = np.transpose(want, (0, 2, 3, 1))
        # tests/data/README.md: atol 1e-5 x max abs, rtol 1e-4.
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # Sample 0's clamped L2 contributes nothing to the image gradient.
    assert not np.any(np.asarray(grad_gen[0]))


def geocross_f64(w: np.ndarray) -> np.ndarray:
    w = w.astype(np.float64)
    a = np.sqrt(((w[:, None] - w[:, :, None]) ** 2).sum(-1) + 1e-9)
    b = np.sqrt(((w[:, None] + w[:, :, None]) ** 2).sum(-1) + 1e-9)
    return (4 * np.arctan2(a, b) ** 2 * w.shape[-1]).mean((1, 2)) / 8


@pytest.mark.parametrize("shape", [(1, 5, 8), (3, 4, 16), (2, 18, 512)])
def test_geocross_scale_comes_from_the_width(shape):
    w = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(geocross(jnp.asarray(w)), geocross_f64(w), rtol=SCALAR_RTOL)


def test_geocross_single_row_and_tiled():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(2, 1, 512)).astype(np.float32))
    np.testing.assert_array_equal(geocross(w), np.zeros(2, np.float32))  # reference: returns 0
    tiled = jnp.broadcast_to(w, (2, 18, 512))  # what PULSE passes in tile_latent mode
    value = geocross(tiled)
    assert np.all(value > 0) and np.all(value < 1e-8)
    grad = jax.grad(lambda w: geocross(w).sum())(tiled)  # equal rows: finite, no NaN
    assert np.all(np.isfinite(grad))


def test_l2_l1_per_face():
    rng = np.random.default_rng(2)
    a = rng.uniform(size=(3, 4, 4, 1)).astype(np.float32)
    b = a + np.array([0.0, 0.1, -0.5], np.float32)[:, None, None, None]
    np.testing.assert_allclose(l2(a, b, 1e-3), [1e-3, 0.01, 0.25], rtol=1e-6)
    np.testing.assert_allclose(l1(a, b, 1e-3), [1e-2, 1.0, 5.0], rtol=1e-6)


def test_per_face_values_do_not_depend_on_the_batch(inputs):
    loss = make_loss(ALL3, EPS, make_degradation("bicubic", 8))
    total, terms, _ = loss(inputs["gen"], inputs["ref_lr"], inputs["lat12"])
    total1, terms1, _ = loss(inputs["gen"][1:], inputs["ref_lr"][1:], inputs["lat12"][1:])
    np.testing.assert_allclose(total1, total[1:], rtol=1e-6)
    for name in terms:
        np.testing.assert_allclose(terms1[name], terms[name][1:], rtol=1e-6)


def test_repeated_name_adds_weights(inputs):
    d = make_degradation("bicubic", 8)
    args = (inputs["gen"], inputs["ref_lr"], inputs["lat12"])
    once = make_loss("150*L2", EPS, d)(*args)[0]
    twice = make_loss("100*L2+50*L2", EPS, d)(*args)[0]
    np.testing.assert_allclose(twice, once, rtol=1e-6)


def test_shape_mismatch(inputs):
    loss = make_loss(DEFAULT_LOSS, EPS, make_degradation("bicubic", 4))
    with pytest.raises(ValueError, match="degradation factor"):
        loss(inputs["gen"], inputs["ref_lr"], inputs["lat12"])


def test_one_representation_of_the_reference(inputs):
    """An array with the function that made it, with the operator, or an Observation: the
    loss reads one representation, and its data terms are l2 and l1 bit for bit."""
    args = (inputs["gen"], inputs["ref_lr"], inputs["lat12"])
    fn = jax.jit(make_loss(ALL3, EPS, make_degradation("bicubic", 8)))
    total, terms, lr_image = fn(*args)
    op = degrade.downscale(8, "bicubic")
    for other in (jax.jit(make_loss(ALL3, EPS, op))(*args),
                  jax.jit(make_loss(ALL3, EPS))(args[0], degrade.Observation(args[1], op),
                                                args[2])):
        for x, y in zip(jax.tree_util.tree_leaves((total, terms, lr_image)),
                        jax.tree_util.tree_leaves(other)):
            assert np.asarray(x).tobytes() == np.asarray(y).tobytes()
    want_l2 = jax.jit(lambda a, b: l2(a, b, EPS))(lr_image, args[1])
    want_l1 = jax.jit(lambda a, b: l1(a, b, EPS))(lr_image, args[1])
    assert np.asarray(terms["L2"]).tobytes() == np.asarray(want_l2).tobytes()
    assert np.asarray(terms["L1"]).tobytes() == np.asarray(want_l1).tobytes()
    with pytest.raises(ValueError, match="needs the operator"):
        make_loss(ALL3, EPS)(*args)


@pytest.mark.parametrize("eps", [-1.0, math.nan, math.inf])
def test_bad_eps(eps):
    with pytest.raises(ValueError, match="eps"):
        make_loss(DEFAULT_LOSS, eps, make_degradation("bicubic", 8))


# --- parser -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "s,want",
    [
        (DEFAULT_LOSS, ((100.0, "L2"), (0.05, "GEOCROSS"))),
        (ALL3, ((100.0, "L2"), (0.05, "GEOCROSS"), (2.0, "L1"))),
        (" 100 * L2 + 0.05 * GEOCROSS ", ((100.0, "L2"), (0.05, "GEOCROSS"))),
        ("1e-3*L2", ((1e-3, "L2"),)),
        ("1e+2*L2+5E+0*GEOCROSS", ((100.0, "L2"), (5.0, "GEOCROSS"))),
        ("1.e+2*L2", ((100.0, "L2"),)),
        ("L2", ((1.0, "L2"),)),
        ("L2+0.05*GEOCROSS", ((1.0, "L2"), (0.05, "GEOCROSS"))),
        ("100*l2+0.05*GeoCross", ((100.0, "L2"), (0.05, "GEOCROSS"))),
        ("0*L2+1*L1", ((0.0, "L2"), (1.0, "L1"))),
        ("100*L2+-1*GEOCROSS", ((100.0, "L2"), (-1.0, "GEOCROSS"))),
    ],
)
def test_parse_valid(s, want):
    assert parse_loss(s) == want


@pytest.mark.parametrize(
    "s,match",
    [
        ("", "empty loss string"),
        ("   ", "empty loss string"),
        ("100*L2+", "empty term"),
        ("+100*L2", "empty term"),
        ("100*L2++0.05*GEOCROSS", "empty term"),
        ("*L2", "missing weight"),
        ("100*", "missing loss name"),
        ("100*L3", "unknown loss name 'L3'"),
        ("L2*100", "the weight goes first"),
        ("1*2*L2", "more than one"),
        ("abc*L2", "not a number"),
        ("nan*L2", "not finite"),
        ("inf*L2+1*GEOCROSS", "not finite"),
        ("0.05*GEOCROSS", "no L2 term"),
        ("10*L1", "no L2 term"),
        ("100*L2, GEOCROSS", "unknown loss name"),  # comma instead of "+"
    ],
)
def test_parse_errors(s, match):
    with pytest.raises(ValueError, match=match) as info:
        parse_loss(s)
    assert "L2, L1, GEOCROSS" in str(info.value)  # every message says what is valid


def test_parse_rejects_non_string():
    with pytest.raises(ValueError, match="must be a str"):
        parse_loss(None)
