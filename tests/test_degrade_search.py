"""The search with a degradation operator: from a start far from the observation, the search
brings the generator's own faces, observed through each operator, within eps (the noise
model's eps + sigma^2 included); l2 is measured in observation space and recomputes from the
returned image; the search descends through the operator; per-face operators belong to their
faces, and their shape errors; and the reference default keeps its bits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pulse_jax
from pulse_jax import degrade as D
from pulse_jax import search
from pulse_jax.search import SearchConfig

import fakes

R = fakes.TINY_CONFIG.resolution
ONE = SearchConfig(steps=1, restarts=1)
SEED = 4


@pytest.fixture(scope="module")
def gen():
    return fakes.tiny_generator()


@pytest.fixture(scope="module")
def starts(gen):
    """The search's own first images for faces 0..2 (steps=1 returns the start, whatever the
    observation): observations made from them are exactly reachable."""
    lr = np.full((3, fakes.LR_SIZE, fakes.LR_SIZE, 3), 0.5, np.float32)
    return search.upsample(gen, lr, ONE, seed=SEED).hr


def _observe(op, hr, noise_key=None):
    y = np.asarray(op(jnp.asarray(hr)))
    noise = [o for o in D.flatten(op) if isinstance(o, D.Noise)]
    if noise:
        y = np.asarray(noise[0].sample(noise_key, y))
    return np.clip(y, 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def shipped():
    """The shipped 64x64 model, its faces 0..2 of key 1 (those of
    experiments/degradation_eval.py) and the search's first images for them with seed 0:
    targets the model can reach, and the starts the searches below begin from."""
    gen = pulse_jax.default_generator()
    truth = np.asarray(gen.sample(jax.random.PRNGKey(1), 3))
    first = search.upsample(gen, np.full((3, 8, 8, 3), 0.5, np.float32), ONE, seed=0).hr
    return gen, truth, first


SEARCH = SearchConfig(steps=100, restarts=1)   # PULSE's defaults

# Together these cover every operator; the slow ones repeat simpler chains.
OPERATORS = [
    "blur(sigma=1)|downscale(factor=4,kernel=gaussian)|gray(weights=709)|noise(sigma=0.06)",
    pytest.param("downscale(factor=8,kernel=area)", marks=pytest.mark.slow),
    pytest.param("downscale(factor=8,kernel=gaussian)", marks=pytest.mark.slow),
    pytest.param("downscale(factor=8,kernel=bicubic)|noise(sigma=0.06)", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("text", OPERATORS)
def test_search_reaches_the_observation_within_eps(shipped, text):
    """A real search: every start is many times the threshold away from the observation (in
    observation space, through the operator), and 100 steps bring every face within it. A
    loss that applied another operator than the one measured would not land there."""
    gen, truth, first = shipped
    op = D.parse(text)
    y = _observe(op, truth, jax.random.PRNGKey(2))
    sigma2 = float(D.noise_variance(op))
    threshold = SEARCH.eps + np.float32(sigma2)
    start_l2 = np.asarray(D.observation_l2(op, first, y))
    assert (start_l2 > 4 * threshold).all(), start_l2
    res = search.upsample(gen, y, SEARCH, seed=0, degradation=text)
    assert res.lr.shape == y.shape and res.hr.shape == truth.shape
    np.testing.assert_allclose(res.lr, op(jnp.asarray(res.hr)), atol=1e-6)
    l2 = np.asarray(D.observation_l2(op, res.hr, y))
    np.testing.assert_allclose(res.l2, l2, rtol=1e-5, atol=1e-9)
    np.testing.assert_array_equal(res.success, res.l2 <= threshold)
    assert (l2 <= threshold).all(), (start_l2, l2)
    if sigma2:
        # The truth's error is the noise (sigma^2 = 0.0036, less where clipping to [0, 1]
        # cut it): above eps, so only the eps + sigma^2 rule calls it, or the result,
        # consistent with the observation.
        truth_l2 = np.asarray(D.observation_l2(op, truth, y))
        assert (truth_l2 > SEARCH.eps).all() and (l2 > SEARCH.eps).all(), (truth_l2, l2)


def test_reference_default_keeps_its_bits(gen, starts):
    """(Before the tests that clear the compiled-search cache: it reuses `starts`' search.)"""
    lr = np.clip(np.asarray(D.bicubic_downscale(jnp.asarray(starts[::-1]), 4)), 0, 1)
    want = search.upsample(gen, lr, ONE, seed=1)
    got = search.upsample(gen, lr, ONE, seed=1, degradation="downscale(factor=4,kernel=bicubic)")
    for a, b in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
        np.testing.assert_array_equal(a, b)
    # The same operator given per face takes the general path: the same search.
    each = search.upsample(gen, lr, ONE, seed=1, degradation=[D.downscale(4)] * 3)
    np.testing.assert_allclose(each.l2, want.l2, rtol=1e-5)
    np.testing.assert_allclose(each.hr, want.hr, atol=1e-6)


@pytest.mark.slow
def test_per_face_masks(shipped, search_traced_once):
    """Inpainting after a downscale: each face its own mask, the error normalised by its
    observed pixels. The search reaches every face within eps from far away; a second call
    with other masks of the same shape reuses the compiled search; and the same search with
    the masks given to the wrong faces leaves those faces outside eps, so each face's loss
    really goes through its own mask."""
    gen, truth, first = shipped
    rng = np.random.default_rng(0)
    for _ in range(2):
        ops = [D.compose(D.downscale(8, kernel="area"), D.mask(rng.random((8, 8)) > 0.3),
                         D.gray()) for _ in truth]
        y = np.concatenate([_observe(op, truth[i:i + 1]) for i, op in enumerate(ops)])
        hidden = np.stack([np.asarray(op.ops[1].mask) == 0 for op in ops])  # [3, 8, 8, 1]
        y = np.where(hidden, rng.random(y.shape, np.float32), y)  # never looked at
        start = np.concatenate([D.observation_l2(op, first[i:i + 1], y[i:i + 1])
                                for i, op in enumerate(ops)])
        assert (start > 5 * SEARCH.eps).all(), start
        res = search.upsample(gen, y, SEARCH, seed=0, degradation=ops)
        assert res.lr.shape == (3, 8, 8, 1) and res.success.all(), (start, res.l2)
        for i, op in enumerate(ops):
            np.testing.assert_allclose(
                res.l2[i], D.observation_l2(op, res.hr[i:i + 1], y[i:i + 1])[0],
                rtol=1e-5, atol=1e-9)
    swapped = search.upsample(gen, y, SEARCH, seed=0, degradation=ops[::-1])
    l2 = [float(D.observation_l2(op, swapped.hr[i:i + 1], y[i:i + 1])[0])
          for i, op in enumerate(ops)]
    assert l2[0] > SEARCH.eps and l2[2] > SEARCH.eps, l2  # face 1 kept its own mask


def test_search_descends_through_the_operator(gen, starts, tmp_path):
    """From random starts (another seed), 25 steps bring every face's observation-space l2
    well below its start's: the gradient flows through the operator, mask included."""
    from PIL import Image
    m = np.full((R // 2, R // 2), 255, np.uint8)
    m[4:10, 3:13] = 0
    Image.fromarray(m).save(tmp_path / "m.png")
    op = D.parse(f"blur(sigma=1)|downscale(factor=2,kernel=area)|mask(file={tmp_path / 'm.png'})"
                 "|gray()")
    y = _observe(op, starts)
    first = []
    cfg = SearchConfig(steps=25, restarts=1, chunk_steps=1)
    res = search.upsample(gen, y, cfg, seed=SEED + 1, degradation=op,
                          progress=lambda p: first.append(p.best_l2[:, 0]) if p.step == 1 else None)
    assert (res.l2 < 0.5 * first[0]).all(), (first[0], res.l2)


def test_observation_errors(gen, starts):
    y3 = np.asarray(D.downscale(4)(jnp.asarray(starts)))
    cases = [
        (y3, "gray()", r"shape \[N, 32, 32, 1\]"),
        (y3, "downscale(factor=4)|gray()", r"\[N, 8, 8, 1\], got shape \(3, 8, 8, 3\)"),
        (y3, "downscale(factor=2)", r"\[N, 16, 16, 3\]"),
        (y3, D.mask(np.ones((R, R))), r"\[N, 32, 32, 3\]"),
        (starts, D.mask(np.ones((8, 8))), "mask is 8x8"),
        (starts, "mask()", "mask\\(\\) without a mask"),
        (starts, "blurr(sigma=1)", "unknown operator 'blurr'"),
        (starts, [D.gray()] * 2, "2 per-face degradations for 3 faces"),
        (starts, 7, "must be an operator"),
        (starts * 255, D.blur(1.0), r"\[0, 1\]"),
    ]
    for y, deg, match in cases:
        with pytest.raises(ValueError, match=match):
            search.upsample(gen, y, ONE, degradation=deg)


@pytest.mark.slow
def test_per_face_operators_shard_over_devices(gen):
    """Each device holds its faces' operators: the same bits as one device."""
    rng = np.random.default_rng(0)
    y = rng.random((3, R, R, 1)).astype(np.float32)
    ops = [D.compose(D.mask(rng.random((R, R)) > 0.5), D.gray()) for _ in range(3)]
    cfg = SearchConfig(steps=3, restarts=2)
    one = search.upsample(gen, y, cfg, seed=0, batch_size=1, degradation=ops)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:2]), ("faces",))
    two = search.upsample(gen, y, cfg, seed=0, batch_size=1, mesh=mesh, degradation=ops)
    np.testing.assert_array_equal(one.hr, two.hr)
    np.testing.assert_array_equal(one.l2, two.l2)
