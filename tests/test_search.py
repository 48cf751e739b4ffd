"""The PULSE search: teacher-forced parity with the reference loop, free-running steps,
the reference's last-iterate option, and self-consistency of results."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pulse_jax
from pulse_jax import degrade, search
from pulse_jax.search import SearchConfig, NoisePlan
from pulse_jax.search import stages as search_stages, steps as search_steps
from pulse_jax.search.steps import Spec
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.stylegan.convs import UPCONVS

import fakes
from helpers import fixture_generator, nhwc

E2E = SearchConfig(bad_noise_layers="17", steps=10)  # the fixture's run.py defaults, 10 steps
GEN_CFG = GeneratorConfig(resolution=128, fmap_base=512, fmap_max=32)


def _spec(gen, cfg, rows=None, factor=8):
    spec = Spec.make(gen.config, cfg, factor)
    assert rows is None or spec.rows == rows
    return spec


def _e2e_inputs(ref, prefix, j=None):
    """(params, frozen noise, ref_lr) from the fixture, optionally teacher-forced at step j."""
    latent = ref[f"{prefix}/init_latent"] if j is None else ref[f"{prefix}/traj_latent"][j]
    noise = [ref[f"{prefix}/init_noise_{i:02d}"] if j is None else ref[f"{prefix}/traj_noise_{i:02d}"][j]
             for i in range(5)]
    frozen = tuple(jnp.asarray(ref[f"{prefix}/init_noise_{i:02d}"]) for i in range(5, 12))
    params = {"z": jnp.asarray(latent), "noise": tuple(jnp.asarray(n) for n in noise)}
    return params, frozen, jnp.asarray(nhwc(ref[f"{prefix}/ref_lr"]))


def _rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_noise_plan():
    plan = NoisePlan.make(SearchConfig(), 18)
    assert plan.trainable == (0, 1, 2, 3, 4) and plan.zero == (17,)
    assert plan.frozen == tuple(range(5, 17))
    assert NoisePlan.make(SearchConfig(bad_noise_layers="17"), 12).zero == ()  # as the e2e fixture
    assert NoisePlan.make(SearchConfig(bad_noise_layers="15.16.17"), 18).zero == (15, 16, 17)
    assert NoisePlan.make(SearchConfig(noise_type="zero"), 6).zero == tuple(range(6))
    fixed = NoisePlan.make(SearchConfig(noise_type="fixed", bad_noise_layers=""), 6)
    assert fixed.trainable == () and fixed.frozen == tuple(range(6))
    with pytest.raises(ValueError, match="'.'-separated"):
        SearchConfig(bad_noise_layers="16,17")
    with pytest.raises(ValueError, match="unknown noise_type"):
        SearchConfig(noise_type="gaussian")


def test_config_rejects_bad_strings():
    with pytest.raises(ValueError):
        SearchConfig(loss_str="100*L3")
    with pytest.raises(ValueError):
        SearchConfig(opt_name="rmsprop")
    with pytest.raises(ValueError):
        SearchConfig(lr_schedule="cosine")
    with pytest.raises(ValueError, match="steps"):
        SearchConfig(steps=0)
    with pytest.raises(ValueError, match="loop"):
        SearchConfig(loop="scan")
    with pytest.raises(ValueError, match="upconv"):
        SearchConfig(upconv="transposed")
    with pytest.raises(ValueError, match="epilogue must be one of"):
        SearchConfig(epilogue="fast")


def test_auto_settings_resolve_per_platform():
    assert (SearchConfig().resolved("cpu").loop, SearchConfig().resolved("cpu").upconv) == ("host", "subpixel")
    for platform in ("gpu", "tpu"):
        cfg = SearchConfig().resolved(platform)
        assert (cfg.loop, cfg.upconv) == ("device", "direct")
    explicit = SearchConfig(loop="device", upconv="subpixel", epilogue="autodiff")
    assert explicit.resolved("cpu") == explicit
    assert SearchConfig().resolved() == SearchConfig().resolved(jax.default_backend())
    assert Spec.make(GEN_CFG, SearchConfig(), 8, "gpu").cfg.loop == "device"


def test_epilogue_resolves_per_platform_and_generator():
    """"auto" is fused_large on CPU and autodiff elsewhere; a spec holds what it does for its
    generator: autodiff below 128x128 and for StyleGAN2 (no instance norm)."""
    assert SearchConfig().resolved("cpu").epilogue == "fused_large"
    assert SearchConfig().resolved("gpu").epilogue == "autodiff"
    big, small = GeneratorConfig(resolution=128), GeneratorConfig(resolution=64)
    assert Spec.make(big, SearchConfig(), 8, "cpu").cfg.epilogue == "fused_large"
    assert Spec.make(small, SearchConfig(), 8, "cpu").cfg.epilogue == "autodiff"
    assert Spec.make(small, SearchConfig(epilogue="fused"), 8, "cpu").cfg.epilogue == "fused"
    assert Spec.make(big, SearchConfig(), 8, "tpu").cfg.epilogue == "autodiff"
    sg2 = pulse_jax.StyleGAN2Config(img_resolution=128)
    assert Spec.make(sg2, SearchConfig(epilogue="fused"), 8, "cpu").cfg.epilogue == "autodiff"


@pytest.mark.parametrize("upconv", UPCONVS)
@pytest.mark.parametrize("j", range(10))
def test_e2e_teacher_forced(ref, j, upconv):
    """At every step, given the reference's iterate, loss terms and gradients match."""
    gen = fixture_generator(ref)
    spec = _spec(gen, dataclasses.replace(E2E, upconv=upconv))
    params, frozen, ref_lr = _e2e_inputs(ref, "e2e", j)
    tot, terms, grads = jax.jit(search.loss_and_grad, static_argnums=0)(spec, gen, params, frozen, ref_lr)
    np.testing.assert_allclose(float(jnp.sum(tot)), ref["e2e/loss_TOTAL"][j], rtol=1e-5)
    np.testing.assert_allclose(float(jnp.sum(terms["L2"])), ref["e2e/loss_L2"][j], rtol=1e-5)
    np.testing.assert_allclose(float(jnp.sum(terms["GEOCROSS"])), ref["e2e/loss_GEOCROSS"][j], rtol=1e-5)
    assert _rel_l2(grads["z"], ref["e2e/grad_traj_latent"][j]) <= 1e-3
    for k in range(5):
        assert _rel_l2(grads["noise"][k], ref[f"e2e/grad_traj_noise_{k:02d}"][j]) <= 1e-2, k


def _free_run(ref, prefix, cfg, rows=None, steps=10):
    """Run our loop from the reference's initial point, one step at a time."""
    gen = fixture_generator(ref)
    spec = _spec(gen, cfg, rows)
    params, frozen, ref_lr = _e2e_inputs(ref, prefix)
    B = params["z"].shape[0]
    stages = search_stages.build(spec, None, B)
    weights = stages.prepare(gen)
    state = stages.init(params, frozen)
    lg = jax.jit(search.loss_and_grad, static_argnums=0)
    losses, states = [], [state]
    for _ in range(steps):
        tot, terms, grads = lg(spec, gen, state.params, state.frozen_noise, ref_lr)
        losses.append((float(jnp.sum(tot)), float(jnp.sum(terms["L2"])), grads, np.asarray(tot)))
        state = stages.run(weights, ref_lr, state, jnp.int32(1))
        states.append(jax.tree_util.tree_map(np.asarray, state))
    return gen, spec, losses, states, stages.finalize(weights, ref_lr, state)


@pytest.mark.parametrize("loop", ["host", "device"])
@pytest.mark.parametrize("upconv", UPCONVS)
def test_e2e_free_running(ref, loop, upconv):
    cfg = dataclasses.replace(E2E, loop=loop, upconv=upconv)
    _, _, losses, states, _ = _free_run(ref, "e2e", cfg)
    totals = np.array([l[0] for l in losses])
    np.testing.assert_allclose(totals[:3], ref["e2e/loss_TOTAL"][:3], rtol=1e-3)
    np.testing.assert_allclose(totals, ref["e2e/loss_TOTAL"], rtol=1e-1)
    # The first update: all but a handful of elements tight.
    err = np.abs(states[1].params["z"] - ref["e2e/traj_latent"][1])
    assert np.mean(err <= 1e-4) >= 0.999 and err.max() <= 1e-2
    # Step 0's gradient is teacher-forced by construction.
    assert _rel_l2(losses[0][2]["z"], ref["e2e/grad_traj_latent"][0]) <= 1e-4
    # Each sample keeps its own best iterate (the reference keeps the batch sum's best).
    per_sample = np.stack([l[3] for l in losses])  # [steps, B]
    np.testing.assert_allclose(states[-1].best_total, per_sample.min(0), rtol=1e-6)
    np.testing.assert_array_equal(states[-1].best_step, per_sample.argmin(0))


def test_e2e18_reference_rows(ref):
    """18 latent rows on a 12-layer generator, exactly as the reference runs it."""
    cfg = SearchConfig(bad_noise_layers="17", steps=10, num_latent_rows=18)
    _, _, losses, states, _ = _free_run(ref, "e2e18", cfg, rows=18, steps=3)
    totals = np.array([l[0] for l in losses])
    np.testing.assert_allclose(totals, ref["e2e18/loss_TOTAL"][:3], rtol=1e-3)
    np.testing.assert_allclose(losses[0][0], ref["e2e18/loss_TOTAL"][0], rtol=1e-5)
    assert _rel_l2(losses[0][2]["z"], ref["e2e18/grad_latent_step0"]) <= 1e-4
    for k in range(5):
        assert _rel_l2(losses[0][2]["noise"][k], ref[f"e2e18/grad_noise_{k:02d}_step0"]) <= 1e-4
    err = np.abs(states[1].params["z"] - ref["e2e18/latent_after_step0"])
    assert np.mean(err <= 1e-4) >= 0.999 and err.max() <= 1e-2


def test_return_last_reproduces_reference(ref):
    """return_image="last": HR is the last evaluated iterate's image (the reference's bug)."""
    cfg = SearchConfig(bad_noise_layers="17", steps=10, return_image="last")
    _, _, _, _, out = _free_run(ref, "e2e", cfg)
    want = np.clip(nhwc(ref["e2e/gen_im_last"]), 0, 1)
    assert _rel_l2(out["hr"], want) <= 0.25
    best = _free_run(ref, "e2e", E2E)[4]
    # With "best" the image is a different iterate's (the fixture's best step is not the last).
    assert int(ref["e2e/best_step"]) != 9
    assert np.abs(np.asarray(best["hr"]) - np.asarray(out["hr"])).max() > 1e-3


# ------------------------------------------------------------------------------------------
# Self-consistency with a random-weight generator whose own images are the targets: the
# tiny test generator (32 x 32, x4), since nothing below depends on the generator's size
# (the parity tests above use the reference's 128 x 128 fixture), and its programs compile
# and run several times faster.

SMALL = SearchConfig(steps=6, restarts=3, chunk_steps=4, eps=2e-3, keep_restart_images=True)
R, FACTOR = fakes.TINY_CONFIG.resolution, fakes.TINY_CONFIG.resolution // fakes.LR_SIZE


@pytest.fixture(scope="module")
def own_targets():
    gen = fakes.tiny_generator()
    img = gen.sample(jax.random.PRNGKey(0), 2)
    lr = np.clip(np.asarray(degrade.bicubic_downscale(img, FACTOR)), 0, 1)
    lr = np.concatenate([lr, lr[:1]])  # a duplicate face: its restarts must differ
    return gen, lr.astype(np.float32)


@pytest.mark.slow
def test_result_is_self_consistent(own_targets):
    gen, lr = own_targets
    res = search.upsample(gen, lr, SMALL, seed=3)
    N, S = lr.shape[0], lr.shape[1]
    assert res.hr.shape == (N, R, R, 3) and res.lr.shape == (N, S, S, 3)
    assert res.hr.min() >= 0 and res.hr.max() <= 1
    np.testing.assert_allclose(np.asarray(degrade.bicubic_downscale(jnp.asarray(res.hr), FACTOR)), res.lr,
                               atol=1e-6)
    np.testing.assert_allclose(res.l2, np.mean((res.lr - lr) ** 2, axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(res.success, res.l2 <= SMALL.eps)
    assert res.restart_l2.shape == (N, 3) and res.restart_hr.shape == (N, 3, R, R, 3)
    np.testing.assert_array_equal(res.l2, res.restart_l2[np.arange(N), res.restart])
    np.testing.assert_array_equal(res.hr, res.restart_hr[np.arange(N), res.restart])
    # Faces 0 and 2 have the same input but different ids: different starts.
    assert not np.array_equal(res.latent[0], res.latent[2])
    assert res.wplus.shape == (N, gen.num_layers, gen.config.dlatent_size)
    assert len(res.noises) == gen.num_layers
    # The rendering of the returned latents reproduces the returned image.
    img = (np.asarray(gen.synthesize(res.wplus, res.noises)) + 1) / 2
    np.testing.assert_allclose(np.clip(img, 0, 1), res.hr, atol=1e-4)


def test_select_rule(own_targets):
    gen, lr = own_targets
    res = search.upsample(gen, lr, SMALL, seed=3)
    for i in range(lr.shape[0]):
        ok = res.restart_l2[i] <= SMALL.eps
        pool = np.flatnonzero(ok) if ok.any() else np.arange(3)
        assert res.restart[i] == pool[np.argmin(res.restart_total[i][pool])]
    by_l2 = search.upsample(gen, lr, SearchConfig(**{**SMALL.__dict__, "select": "l2"}), seed=3)
    np.testing.assert_array_equal(by_l2.restart, np.argmin(by_l2.restart_l2, axis=1))


@pytest.mark.slow
def test_deterministic_and_batch_independent(own_targets):
    gen, lr = own_targets
    cfg = SearchConfig(steps=4, restarts=2, chunk_steps=2)
    a = search.upsample(gen, lr, cfg, seed=5, batch_size=2)
    b = search.upsample(gen, lr, cfg, seed=5, batch_size=2)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)
    # Face 2 alone (padded to the same batch shape, same face id) gives the same bits.
    alone = search.upsample(gen, lr[2:3], cfg, seed=5, batch_size=2, face_ids=[2])
    np.testing.assert_array_equal(alone.hr[0], a.hr[2])
    np.testing.assert_array_equal(alone.l2[0], a.l2[2])
    # ... and so does face 1 in a batch with other faces.
    other = search.upsample(gen, lr[[1, 0]], cfg, seed=5, batch_size=2, face_ids=[1, 0])
    np.testing.assert_array_equal(other.hr[0], a.hr[1])
    c = search.upsample(gen, lr, cfg, seed=6, batch_size=2)
    assert not np.array_equal(c.latent, a.latent)


@pytest.mark.parametrize("loop", ["host", "device"])
def test_no_retrace_for_same_shape(own_targets, loop, search_traced_once):
    gen, lr = own_targets
    cfg = SearchConfig(steps=5, restarts=2, chunk_steps=2, loop=loop)  # chunks of 2, 2, 1: one compile
    search.upsample(gen, lr[:2], cfg, seed=0)
    search.upsample(gen, lr[1:3], cfg, seed=1)  # a retrace raises (search_traced_once)


def test_progress_reports(own_targets):
    gen, lr = own_targets
    seen = []
    cfg = SearchConfig(steps=5, restarts=2, chunk_steps=2)
    search.upsample(gen, lr[:2], cfg, progress=lambda p: seen.append((p.step, p.best_l2.shape,
                                                                        p.render().shape)))
    assert seen == [(2, (2, 2), (2, R, R, 3)), (4, (2, 2), (2, R, R, 3)), (5, (2, 2), (2, R, R, 3))]


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["host", "device"])
def test_many_devices_match_one(own_targets, loop):
    gen, lr = own_targets
    devices = jax.devices()
    if len(devices) < 4:
        pytest.fail("conftest should provide 4 fake CPU devices")
    cfg = SearchConfig(steps=4, restarts=2, chunk_steps=2, loop=loop)
    lr4 = np.concatenate([lr, lr[:2]])[:5]  # 5 faces: ragged over 4 devices
    one = search.upsample(gen, lr4, cfg, seed=1, batch_size=1)
    mesh = jax.sharding.Mesh(np.array(devices[:4]), ("faces",))
    four = search.upsample(gen, lr4, cfg, seed=1, batch_size=1, mesh=mesh)
    np.testing.assert_array_equal(four.hr, one.hr)
    np.testing.assert_array_equal(four.l2, one.l2)


@pytest.mark.slow
def test_spread_restarts_over_devices(own_targets):
    """One face's restarts on four devices: each device runs one restart, and the result is
    the one-device search's up to float rounding (the per-device batch shape differs)."""
    gen, lr = own_targets
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("faces",))
    cfg = SearchConfig(steps=2, restarts=4, chunk_steps=1)
    spec = Spec.make(gen.config, cfg, FACTOR)
    st = search_stages.build(spec, mesh, 4, spread_restarts=True)
    state = st.init(*st.draw(search.restart_keys(0, [0], 4)))
    z = state.params["z"]
    assert len(z.sharding.device_set) == 4 and z.addressable_shards[0].data.shape[0] == 1

    spread = search.upsample(gen, lr[:1], cfg, seed=0, mesh=mesh, spread_restarts=True)
    one = search.upsample(gen, lr[:1], cfg, seed=0)
    np.testing.assert_allclose(spread.restart_total, one.restart_total, rtol=1e-4)
    np.testing.assert_allclose(spread.hr, one.hr, atol=1e-4)
    assert spread.restart.tolist() == one.restart.tolist()
    with pytest.raises(ValueError, match="do not divide over 4 devices"):
        search.upsample(gen, lr[:1], dataclasses.replace(cfg, restarts=3), mesh=mesh,
                        spread_restarts=True)


def test_input_validation(own_targets):
    gen, lr = own_targets
    with pytest.raises(ValueError, match="valid sizes"):
        search.upsample(gen, np.zeros((1, 12, 12, 3), np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\].*divide uint8 images by 255"):
        search.upsample(gen, lr * 255)
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        search.upsample(gen, lr * 2 - 1)
    with pytest.raises(ValueError, match="square"):
        search.upsample(gen, np.zeros((1, 16, 8, 3), np.float32))
    with pytest.raises(ValueError, match="Gaussian fit"):
        search.upsample(gen.replace(gaussian_fit=None), lr)


@pytest.mark.slow
def test_bicubic_overshoot_is_clipped_with_a_warning(own_targets):
    """Our own downscale of an image in [0, 1] can leave [0, 1] by a little: such input is
    clipped (with a warning) and searched exactly like the clipped array."""
    gen, lr = own_targets
    S = lr.shape[1]
    # (seed 1: a pattern whose downscale overshoots both ways at this size, checked below)
    blocks = np.random.default_rng(1).integers(0, 2, (S, S)).astype(np.float32)
    hr = np.repeat(np.kron(blocks, np.ones((FACTOR, FACTOR), np.float32))[None, :, :, None], 3, -1)
    down = np.asarray(degrade.bicubic_downscale(jnp.asarray(hr), FACTOR))  # [1, S, S, 3]
    assert down.max() > 1 and down.min() < 0        # a sharp image overshoots both ways
    cfg = SearchConfig(steps=2, restarts=1)
    with pytest.warns(UserWarning, match="clipped to \\[0, 1\\]"):
        res = search.upsample(gen, down, cfg)
    want = search.upsample(gen, np.clip(down, 0, 1), cfg)
    np.testing.assert_array_equal(res.hr, want.hr)


@pytest.mark.parametrize("opt_name,schedule", [("adam", "linear1cycledrop"), ("adamax", "fixed"),
                                               ("sgd", "linear1cycle"), ("sgdm", "fixed")])
@pytest.mark.slow
def test_optimizers_and_schedules_run(own_targets, opt_name, schedule):
    """Every optimizer/schedule runs; latent rows stay on their initial spheres."""
    gen, lr = own_targets
    cfg = SearchConfig(steps=3, restarts=1, opt_name=opt_name, lr_schedule=schedule,
                       learning_rate=0.4 if opt_name.startswith("adam") else 0.05)
    res = search.upsample(gen, lr[:1], cfg, seed=0)
    assert np.isfinite(res.l2).all()
    spec = _spec(gen, cfg, factor=FACTOR)
    init, _ = search_steps.draw(spec, search.restart_keys(0, [0], 1)[0])
    np.testing.assert_allclose(np.linalg.norm(res.latent[0], axis=-1),
                               np.linalg.norm(np.asarray(init["z"]), axis=-1), rtol=1e-5)


@pytest.mark.slow
def test_tile_latent_and_noise_modes(own_targets):
    gen, lr = own_targets
    res = search.upsample(gen, lr[:1], SearchConfig(steps=2, tile_latent=True), seed=0)
    assert res.latent.shape == (1, 1, gen.config.dlatent_size)
    np.testing.assert_array_equal(res.wplus[0], np.broadcast_to(res.wplus[0, :1], res.wplus[0].shape))
    zero = search.upsample(gen, lr[:1], SearchConfig(steps=2, noise_type="zero"), seed=0)
    assert all(not np.any(n) for n in zero.noises)
    cfg = SearchConfig(steps=2, noise_type="fixed", bad_noise_layers="3.last")
    fixed = search.upsample(gen, lr[:1], cfg, seed=0)
    _, frozen = search_steps.draw(_spec(gen, cfg, factor=FACTOR), search.restart_keys(0, [0], 1)[0])
    assert not np.any(fixed.noises[3]) and not np.any(fixed.noises[-1])
    kept = [i for i in range(gen.num_layers) if i not in (3, gen.num_layers - 1)]
    for i, n in zip(kept, frozen):  # frozen maps come back unchanged
        np.testing.assert_array_equal(fixed.noises[i][0, ..., 0], np.asarray(n)[0])
    trained = search.upsample(gen, lr[:1], SearchConfig(steps=2), seed=0)
    _, frozen_t = search_steps.draw(_spec(gen, SearchConfig(), factor=FACTOR), search.restart_keys(0, [0], 1)[0])
    # Layers 0..4 are trainable and move; layer 5 is frozen and does not.
    np.testing.assert_array_equal(trained.noises[5][0, ..., 0], np.asarray(frozen_t[0])[0])
