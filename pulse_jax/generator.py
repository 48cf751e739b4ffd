"""The :class:`Generator` pytree: a frozen generator (StyleGAN v1 or StyleGAN2) with its
parameters and Gaussian fit."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp

from pulse_jax import families
from pulse_jax.families import AnyConfig


@flax.struct.dataclass
class Generator:
    """A pretrained generator as PULSE uses it.

    Attributes:
      config: the architecture (static; hashable, so jit specializes on it): a StyleGAN v1
        :class:`~pulse_jax.stylegan.GeneratorConfig` or a
        :class:`~pulse_jax.stylegan2.StyleGAN2Config`; ``config.family`` names which.
      params: ``{"synthesis": ..., "mapping": ... or None}`` raw parameter pytrees
        (see :mod:`pulse_jax.stylegan` and :mod:`pulse_jax.stylegan2` for layouts).
      gaussian_fit: ``{"mean": [D], "std": [D]}`` float32, the statistics of
        ``LeakyReLU_5(mapping(z))`` that PULSE uses to Gaussianize its latent, or None.

    A ``Generator`` is a pytree, so it can be passed straight into jit-compiled functions.
    """

    config: AnyConfig = flax.struct.field(pytree_node=False)
    params: dict[str, Any]
    gaussian_fit: Optional[dict[str, jax.Array]] = None

    @property
    def num_layers(self) -> int:
        """Number of W+ rows (StyleGAN v1: 2 * log2(resolution) - 2, as many as noise maps;
        StyleGAN2: the official ``num_ws``, one more than noise maps)."""
        return self.config.num_layers

    @property
    def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Per-layer noise shapes ``(r, r, 1)`` in the official layer order; noise arrays add
        a leading batch axis."""
        return self.config.noise_shapes

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def has_mapping(self) -> bool:
        return self.params.get("mapping") is not None

    def synthesize(self, wplus: jax.Array, noises: Sequence[jax.Array],
                   remat: bool = False) -> jax.Array:
        """W+ ``[B, L, D]`` and one noise map ``[B, r, r, 1]`` per ``noise_shapes`` entry ->
        raw image ``[B, R, R, 3]``.

        The output is the synthesis network's, roughly in [-1, 1] and unclamped; PULSE
        maps it to an image with ``(x + 1) / 2``.
        """
        return families.module_for(self.config).synthesize(
            self.config, self.params["synthesis"], jnp.asarray(wplus, jnp.float32),
            [jnp.asarray(n, jnp.float32) for n in noises], remat=remat)

    def map(self, z: jax.Array) -> jax.Array:
        """Mapping network: z ``[N, z_size]`` -> w ``[N, D]`` (untruncated). Needs mapping
        parameters."""
        if not self.has_mapping:
            raise ValueError("this generator has no mapping-network parameters "
                             "(import it with mapping weights to use map())")
        return families.module_for(self.config).map_latents(self.config, self.params["mapping"],
                                    jnp.asarray(z, jnp.float32))

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` random images ``[n, R, R, 3]`` in [0, 1]: z ~ N(0, I) through the mapping,
        the same w for every layer, standard-normal noise. Needs mapping parameters."""
        kz, kn = jax.random.split(key)
        w = self.map(jax.random.normal(kz, (n, self.config.z_size), jnp.float32))
        wplus = jnp.broadcast_to(w[:, None], (n, self.num_layers, w.shape[-1]))
        noises = families.module_for(self.config).noise_normal(self.config, kn, n)
        raw = self.synthesize(wplus, noises)
        return jnp.clip((raw + 1.0) / 2.0, 0.0, 1.0)

    def replace_gaussian_fit(self, mean: Any, std: Any) -> "Generator":
        fit = {"mean": jnp.asarray(mean, jnp.float32), "std": jnp.asarray(std, jnp.float32)}
        D = self.config.dlatent_size
        for k, v in fit.items():
            if v.shape != (D,):
                raise ValueError(f"gaussian_fit[{k!r}] must have shape ({D},), got {v.shape}")
        return self.replace(gaussian_fit=fit)


def random_generator(config: AnyConfig, key: jax.Array, with_mapping: bool = True,
                     gaussian_fit: Optional[dict] = None) -> Generator:
    """A generator with the reference's random initialization (for tests and benchmarks)."""
    params = families.module_for(config).init_params(config, key)
    if not with_mapping:
        params["mapping"] = None
    return Generator(config=config, params=params, gaussian_fit=gaussian_fit)
