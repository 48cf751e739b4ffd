"""Parity of the spherical optimizer, the torch-semantics optimizers and the schedules with the
reference (fixture sections 7, 8 and the e2e optimizer replay of section 9)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pulse_jax.optim import (
    OPTIMIZERS,
    init_radii,
    lr_multiplier,
    make_optimizer,
    make_schedule,
    project,
    sphere_radii,
    spherical_update,
)

SPH_ATOL = 1e-5  # tests/data/README.md: sph/*
SCHED_RTOL = 1e-12  # tests/data/README.md: sched/*, e2e/lr (exact Python float64)
REPLAY_ATOL = 2e-5  # tests/data/README.md: e2e optimizer replay
F32_RTOL = 1e-6  # float32 schedule vs the float64 one (a few roundings of ~6e-8)
NOISE_KEYS = tuple(f"noise_0{k}" for k in range(5))


# --- projection -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["latent", "noise"])
def test_radii_and_projection(ref, kind):
    # Noise stays NCHW [B, 1, H, W]: dims 0 and 1 are the batch dims, radius over H x W.
    x0 = jnp.asarray(ref[f"sph/x0_{kind}"])
    radii = sphere_radii(x0)
    assert radii.shape == x0.shape[:2] + (1,) * (x0.ndim - 2)
    np.testing.assert_allclose(radii, ref[f"sph/radii_{kind}"], rtol=0, atol=SPH_ATOL)
    proj = project(jnp.asarray(ref[f"sph/xmod_{kind}"]), radii)
    np.testing.assert_allclose(proj, ref[f"sph/proj_{kind}"], rtol=0, atol=SPH_ATOL)
    np.testing.assert_allclose(sphere_radii(proj), radii, rtol=1e-6)


def test_radii_of_2d_and_bad_ndim():
    x = jnp.asarray([[3.0, -4.0]])
    np.testing.assert_allclose(sphere_radii(x), np.sqrt(np.array([[9.0, 16.0]]) + 1e-9))
    with pytest.raises(ValueError, match="ndim >= 2"):
        sphere_radii(jnp.ones(3))


# --- optimizers + projection ------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_spherical_steps_match_reference(ref, name):
    params = {k: jnp.asarray(ref[f"sph/x0_{k}"]) for k in ("latent", "noise")}
    radii = init_radii(params)
    opt = make_optimizer(name, 0.4)
    state = opt.init(params)
    step = jax.jit(lambda p, s, g: spherical_update(opt, p, s, g, radii))
    for i in (1, 2):
        grads = {k: jnp.asarray(ref[f"sph/grad{i}_{k}"]) for k in params}
        params, state = step(params, state, grads)
        for k in params:
            np.testing.assert_allclose(
                params[k], ref[f"sph/{name}/step{i}_{k}"], rtol=0, atol=SPH_ATOL,
                err_msg=f"{name} step {i} {k}",
            )


def test_torch_adam_vs_optax_adam(ref):
    # Same formula (docs/reference.md, "The spherical optimizer"), but optax computes
    # 1 - 0.999^t in float32, which cancels: its second update is off by ~1e-5 relative,
    # enough to break the fixture's atol at lr 0.4.
    params = {k: jnp.asarray(ref[f"sph/x0_{k}"]) for k in ("latent", "noise")}
    ours, theirs = make_optimizer("adam", 0.4), optax.adam(0.4, 0.9, 0.999, 1e-8, eps_root=0.0)
    s1, s2 = ours.init(params), theirs.init(params)
    for i in (1, 2):
        grads = {k: jnp.asarray(ref[f"sph/grad{i}_{k}"]) for k in params}
        u1, s1 = ours.update(grads, s1, params)
        u2, s2 = theirs.update(grads, s2, params)
        for k in params:
            np.testing.assert_allclose(u1[k], u2[k], rtol=1e-4, atol=1e-7)


def torch_adamax_f64(grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Updates of torch.optim.Adamax in float64: u = max(b2 u, |g| + eps), eps inside the max."""
    m = u = 0.0
    out = []
    for t, g in enumerate(grads, start=1):
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        out.append(-lr / (1 - b1**t) * m / u)
    return out


def test_torch_adamax_formula():
    # Tiny and zero gradients, where eps's placement matters.
    grads = [np.array([1e-9, 1.0, -3e-8, 0.0]), np.array([0.0, -2.0, 1e-9, 0.0]),
             np.array([5e-9, 0.5, 0.0, 1e-7])]
    want = torch_adamax_f64(grads, 0.4)
    opt = make_optimizer("adamax", 0.4)
    p = {"x": jnp.zeros((1, 1, 4))}
    s = opt.init(p)
    for g, w in zip(grads, want):
        u, s = opt.update({"x": jnp.asarray(g[None, None], jnp.float32)}, s, p)
        np.testing.assert_allclose(u["x"][0, 0], w, rtol=1e-5)


def test_sgdm_first_step_is_the_gradient():
    p = {"x": jnp.zeros((1, 1, 3))}
    g = {"x": jnp.asarray([[[1.0, -2.0, 3.0]]])}
    opt = make_optimizer("sgdm", 0.5)
    s = opt.init(p)
    u1, s = opt.update(g, s, p)
    u2, _ = opt.update(g, s, p)
    np.testing.assert_allclose(u1["x"], -0.5 * g["x"])
    np.testing.assert_allclose(u2["x"], -0.5 * 1.9 * g["x"], rtol=1e-6)


def test_state_is_a_pytree_and_the_step_does_not_retrace():
    opt = make_optimizer("adam", make_schedule("linear1cycledrop", 10, 0.4))
    p = {"z": jnp.ones((2, 3, 4)), "n": jnp.ones((2, 1, 2, 2))}
    radii = init_radii(p)
    traces = []

    @jax.jit
    def step(p, s, g):
        traces.append(None)
        return spherical_update(opt, p, s, g, radii)

    s = opt.init(p)
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(s))
    for _ in range(3):
        p, s = step(p, s, jax.tree.map(jnp.ones_like, p))
    assert len(traces) == 1
    assert int(s.count) == 3


def test_unknown_optimizer():
    with pytest.raises(ValueError, match="valid names: adam, adamax, sgd, sgdm"):
        make_optimizer("rmsprop", 0.1)


# --- schedules --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["fixed", "linear1cycle", "linear1cycledrop"])
def test_lr_multiplier_matches_reference(ref, name):
    steps = int(ref["sched/steps"])
    got = np.array([lr_multiplier(j, steps, name) for j in range(steps)])
    np.testing.assert_allclose(got, ref[f"sched/{name}"], rtol=SCHED_RTOL, atol=0)
    sched = jax.jit(make_schedule(name, steps, 0.4))
    jnp_values = np.array([sched(j) for j in range(steps)])  # traced count under jit
    assert jnp_values.dtype == np.float32
    np.testing.assert_allclose(jnp_values, 0.4 * ref[f"sched/{name}"], rtol=F32_RTOL)
    np.testing.assert_allclose(jax.vmap(sched)(jnp.arange(steps)), jnp_values, rtol=F32_RTOL)


def test_spec_table_of_lrs():
    # docs/reference.md, "Learning-rate schedules": S = 100, lr 0.4, linear1cycledrop.
    table = {0: 0.04, 1: 0.048, 10: 0.12, 20: 0.2, 30: 0.28, 44: 0.392, 45: 0.4, 60: 0.28,
             80: 0.12, 89: 0.048, 90: 0.04, 95: 0.0202, 98: 0.00832, 99: 0.00436}
    for j, lr in table.items():
        np.testing.assert_allclose(0.4 * lr_multiplier(j, 100, "linear1cycledrop"), lr, rtol=1e-12)


def test_e2e_lr(ref):
    got = [0.4 * lr_multiplier(j, 10, "linear1cycledrop") for j in range(10)]
    np.testing.assert_allclose(got, ref["e2e/lr"], rtol=SCHED_RTOL, atol=0)


def test_bad_schedule():
    with pytest.raises(ValueError, match="valid names: fixed, linear1cycle, linear1cycledrop"):
        lr_multiplier(0, 10, "cosine")
    with pytest.raises(ValueError, match="valid names"):
        make_schedule("cosine", 10, 0.4)
    with pytest.raises(ValueError, match="steps"):
        make_schedule("fixed", 0, 0.4)


# --- e2e optimizer replay (tests/data/README.md, "Testing the loop with e2e/*", 2) ----------------


def test_e2e_adam_replay(ref):
    params = {"latent": jnp.asarray(ref["e2e/traj_latent"][0])}
    params.update({k: jnp.asarray(ref[f"e2e/traj_{k}"][0]) for k in NOISE_KEYS})
    radii = init_radii(params)
    lrs = jnp.asarray(ref["e2e/lr"], jnp.float32)
    opt = make_optimizer("adam", lambda count: lrs[count])
    state = opt.init(params)
    step = jax.jit(lambda p, s, g: spherical_update(opt, p, s, g, radii))
    n_steps = ref["e2e/lr"].shape[0]
    for j in range(n_steps):
        grads = {k: jnp.asarray(ref[f"e2e/grad_traj_{k}"][j]) for k in params}
        params, state = step(params, state, grads)
        for k in params:
            np.testing.assert_allclose(
                params[k], ref[f"e2e/traj_{k}"][j + 1], rtol=0, atol=REPLAY_ATOL,
                err_msg=f"after step {j}: {k}",
            )
