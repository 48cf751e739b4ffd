"""StyleGAN v1 parameters: the reference's random init and the params pytree's shapes."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from pulse_jax.stylegan.config import GeneratorConfig
from pulse_jax.stylegan.network import Mapping, Synthesis


def init_params(config: GeneratorConfig, key: jax.Array) -> dict[str, Any]:
    """Random parameters ``{"synthesis": ..., "mapping": ...}`` with the reference's init.

    Like the reference, biases and noise strengths start at 0 and const/input bias at 1.
    """
    ks, km = jax.random.split(key)
    L, D = config.num_layers, config.dlatent_size
    wplus = jnp.zeros((1, L, D), jnp.float32)
    noises = [jnp.zeros((1,) + s, jnp.float32) for s in config.noise_shapes]
    # jit: an eager init would run the full-resolution forward pass op by op.
    synthesis = jax.jit(lambda k: Synthesis(config).init(k, wplus, noises)["params"])(ks)
    mapping = jax.jit(lambda k: Mapping(config).init(k, wplus[:, 0])["params"])(km)
    return {"synthesis": synthesis, "mapping": mapping}


def param_shapes(config: GeneratorConfig) -> dict[str, Any]:
    """The params pytree of ``config`` as ``jax.ShapeDtypeStruct`` leaves (nothing computed)."""
    return jax.eval_shape(lambda k: init_params(config, k), jax.random.PRNGKey(0))
