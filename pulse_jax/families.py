"""Generator families: which module implements a generator config.

pulse-jax runs two families behind one :class:`~pulse_jax.generator.Generator` API:
StyleGAN v1 (:mod:`pulse_jax.stylegan`, :class:`~pulse_jax.stylegan.GeneratorConfig`) and
StyleGAN2 (:mod:`pulse_jax.stylegan2`, :class:`~pulse_jax.stylegan2.StyleGAN2Config`). A
config names its family (``config.family``); the functions here dispatch on it, so callers
never test which family they hold.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Mapping, Sequence, Union

import jax

from pulse_jax import stylegan, stylegan2
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.stylegan2 import StyleGAN2Config

AnyConfig = Union[GeneratorConfig, StyleGAN2Config]

_MODULES: dict[str, ModuleType] = {stylegan.FAMILY: stylegan, stylegan2.FAMILY: stylegan2}
_CONFIGS: dict[str, type] = {stylegan.FAMILY: GeneratorConfig, stylegan2.FAMILY: StyleGAN2Config}
FAMILIES = tuple(_MODULES)


def module_for(config: AnyConfig) -> ModuleType:
    """The module implementing ``config``'s family (``synthesize``, ``map_latents``,
    ``mapping_apply``, ``prepare_synthesis``, ``synthesis_prepared``, ``init_params``,
    ``param_shapes``, ``noise_zeros``, ``noise_normal``)."""
    family = getattr(config, "family", None)
    if family not in _MODULES:
        raise ValueError(f"not a generator config: {type(config).__name__}")
    return _MODULES[family]


def config_from_dict(family: str, d: Mapping[str, Any]) -> AnyConfig:
    """The config of ``family`` ("stylegan" or "stylegan2") from its ``to_dict()``."""
    if family not in _CONFIGS:
        raise ValueError(f"unknown generator family {family!r} (known: {list(FAMILIES)})")
    return _CONFIGS[family].from_dict(d)


def mapping_fn(config: AnyConfig, params: Any, z: jax.Array) -> jax.Array:
    """The mapping network, unjitted (for callers that jit a larger function):
    z ``[N, z_size]`` -> w ``[N, dlatent_size]``."""
    return module_for(config).mapping_apply(config, params, z)


def prepare_synthesis(config: AnyConfig, params: Any, upconv: str) -> Any:
    """The synthesis params as a search reads them, computed once per search: StyleGAN v1's
    with their conv weight arithmetic done for the ``upconv`` form; StyleGAN2's as they are,
    since its convs are modulated per sample."""
    return module_for(config).prepare_synthesis(config, params, upconv)


def synthesize_prepared(config: AnyConfig, prepared: Any, wplus: jax.Array,
                        noises: Sequence[jax.Array], *, remat: bool, upconv: str) -> jax.Array:
    """Synthesis from :func:`prepare_synthesis`'s params, unjitted: W+ ``[B, L, D]`` and the
    noise maps ``[B, r, r, 1]`` -> raw image ``[B, R, R, C]`` (about [-1, 1])."""
    return module_for(config).synthesis_prepared(config, prepared, wplus, noises, remat=remat,
                                                 upconv=upconv)
