"""SearchConfig.sphere_radius: the reference's initial radius by default, sqrt(d) on request."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fakes
from pulse_jax import optim, search
from pulse_jax.batch import manifest


def test_dim_radii_and_the_projection_onto_them():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 5, 7, 4))
    r = optim.dim_radii(x)
    assert r.shape == (3, 5, 1, 1) and np.allclose(r, math.sqrt(28))
    np.testing.assert_allclose(optim.sphere_radii(optim.project(x, r)), r, rtol=1e-6)


def test_sqrt_dim_keeps_every_row_on_the_sqrt_d_sphere_and_initial_on_its_start():
    gen = fakes.tiny_generator()
    lr = np.stack([fakes.face_array(i) for i in range(2)]).astype(np.float32) / 255
    norms = {}
    for choice in ("initial", "sqrt_dim"):
        cfg = search.SearchConfig(steps=4, restarts=2, chunk_steps=4, sphere_radius=choice)
        res = search.upsample(gen, lr, cfg)
        norms[choice] = np.linalg.norm(res.latent, axis=-1)        # [N, rows]
        assert np.all(np.isfinite(res.l2))
    d = res.latent.shape[-1]  # the dlatent width
    np.testing.assert_allclose(norms["sqrt_dim"], math.sqrt(d), rtol=1e-5)
    # The reference's radius is the random start's norm: near sqrt(d), never equal to it.
    assert np.all(np.abs(norms["initial"] - math.sqrt(d)) > 1e-3)
    assert np.all(np.abs(norms["initial"] / math.sqrt(d) - 1) < 0.5)


def test_initial_is_the_default_and_leaves_config_hashes_as_they_were():
    assert search.SearchConfig().sphere_radius == "initial"
    fp = "0" * 64
    default = manifest.config_hash(fp, search.SearchConfig(), 0)
    assert manifest.config_hash(fp, search.SearchConfig(sphere_radius="initial"), 0) == default
    assert "sphere_radius" not in manifest.hashed_search_fields(search.SearchConfig())
    assert manifest.config_hash(fp, search.SearchConfig(sphere_radius="sqrt_dim"), 0) != default
    with pytest.raises(ValueError, match="sphere_radius must be one of"):
        search.SearchConfig(sphere_radius="unit")
