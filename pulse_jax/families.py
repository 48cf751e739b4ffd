"""Generator families: which module implements a generator config.

pulse-jax runs two families behind one :class:`~pulse_jax.generator.Generator` API:
StyleGAN v1 (:mod:`pulse_jax.stylegan`, :class:`~pulse_jax.stylegan.GeneratorConfig`) and
StyleGAN2 (:mod:`pulse_jax.stylegan2`, :class:`~pulse_jax.stylegan2.StyleGAN2Config`). Each
family module provides the functions of :class:`Family`, under those names and signatures
(``tests/test_families.py`` checks both modules). A config names its family
(``config.family``); callers dispatch in one way, ``module_for(config).<function>(config, ...)``,
so they never test which family they hold.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Sequence, Union

import jax
import jax.numpy as jnp

from pulse_jax import stylegan, stylegan2
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.stylegan2 import StyleGAN2Config

AnyConfig = Union[GeneratorConfig, StyleGAN2Config]


class Family(Protocol):
    """What a generator family module provides (a module satisfies it structurally).

    Shapes: W+ ``[B, L, D]`` (``L = config.num_layers``), noise maps ``[B, r, r, 1]`` per
    ``config.noise_shapes`` entry, z ``[N, config.z_size]``, w ``[N, D]``, raw images
    ``[B, R, R, C]`` about [-1, 1], unclamped. Params are the family's raw pytrees.
    """

    FAMILY: str

    def synthesize(self, config: Any, params: Any, wplus: jax.Array,
                   noises: Sequence[jax.Array], remat: bool = False) -> jax.Array:
        """Jitted synthesis: W+ and noise -> raw image (``remat``: per-block checkpoints)."""

    def map_latents(self, config: Any, params: Any, z: jax.Array) -> jax.Array:
        """Jitted mapping network: z -> w."""

    def mapping_apply(self, config: Any, params: Any, z: jax.Array) -> jax.Array:
        """Unjitted :meth:`map_latents` (for callers that jit a larger function)."""

    def prepare_synthesis(self, config: Any, params: Any, upconv: str = "direct") -> Any:
        """The synthesis params as a search reads them, computed once per search (StyleGAN
        v1: conv weight arithmetic done for the ``upconv`` form; StyleGAN2: as they are)."""

    def synthesis_prepared(self, config: Any, prepared: Any, wplus: jax.Array,
                           noises: Sequence[jax.Array], *, remat: bool = False,
                           upconv: str = "direct", epilogue: str = "autodiff") -> jax.Array:
        """Unjitted synthesis from :meth:`prepare_synthesis`'s params (``upconv``,
        ``epilogue``: how v1 computes it, see ``pulse_jax.stylegan.Synthesis``)."""

    def init_params(self, config: Any, key: jax.Array) -> dict[str, Any]:
        """Random ``{"synthesis": ..., "mapping": ...}`` with the family's own init."""

    def param_shapes(self, config: Any) -> dict[str, Any]:
        """The params pytree as ``jax.ShapeDtypeStruct`` leaves (nothing computed)."""

    def noise_zeros(self, config: Any, batch: int, dtype: Any = jnp.float32) -> list[jax.Array]:
        """All-zero noise maps, one ``[batch, r, r, 1]`` per ``noise_shapes`` entry."""

    def noise_normal(self, config: Any, key: jax.Array, batch: int) -> list[jax.Array]:
        """Standard-normal noise maps, one ``[batch, r, r, 1]`` per ``noise_shapes`` entry."""


_MODULES: dict[str, Family] = {stylegan.FAMILY: stylegan, stylegan2.FAMILY: stylegan2}
_CONFIGS: dict[str, type] = {stylegan.FAMILY: GeneratorConfig, stylegan2.FAMILY: StyleGAN2Config}
FAMILIES = tuple(_MODULES)


def module_for(config: AnyConfig) -> Family:
    """The module implementing ``config``'s family (the functions of :class:`Family`);
    ValueError for anything that is not a generator config."""
    family = getattr(config, "family", None)
    if family not in _MODULES:
        raise ValueError(f"not a generator config: {type(config).__name__}")
    return _MODULES[family]


def config_from_dict(family: str, d: Mapping[str, Any]) -> AnyConfig:
    """The config of ``family`` ("stylegan" or "stylegan2") from its ``to_dict()``."""
    if family not in _CONFIGS:
        raise ValueError(f"unknown generator family {family!r} (known: {list(FAMILIES)})")
    return _CONFIGS[family].from_dict(d)
