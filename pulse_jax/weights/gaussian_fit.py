"""PULSE's Gaussian fit of the mapping network's pre-activation outputs.

PULSE Gaussianizes its search latent as ``w = LeakyReLU_0.2(z * std + mean)``, where
``mean``/``std`` are the per-dimension statistics of ``LeakyReLU_5(mapping(z))`` (slope 5
undoes the mapping's final LeakyReLU(0.2)) over 1,000,000 standard-normal z, with the
*unbiased* (N - 1) standard deviation. The reference draws z with ``torch.manual_seed(0)``
on CUDA, which JAX cannot reproduce bit for bit; our fit uses a JAX key instead, so a
recomputed fit differs from the shipped one by sampling noise only (about 1e-3).
"""

from __future__ import annotations

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax import families
from pulse_jax.families import AnyConfig


def undo_lrelu(w: jax.Array) -> jax.Array:
    """LeakyReLU with negative slope 5: the inverse of the mapping's LeakyReLU(0.2)."""
    return jnp.where(w >= 0, w, w * 5.0)


def fit_statistics(samples: np.ndarray) -> dict[str, np.ndarray]:
    """Mean and unbiased std over axis 0 of ``[N, D]`` samples (float32 results)."""
    x = np.asarray(samples, np.float64)
    return {"mean": x.mean(0).astype(np.float32), "std": x.std(0, ddof=1).astype(np.float32)}


def compute_gaussian_fit(config: AnyConfig, mapping_params, key: jax.Array,
                         num_samples: int = 1_000_000, chunk_size: int = 65536,
                         z: Optional[np.ndarray] = None,
                         progress: Optional[Callable[[int, int], None]] = None,
                         ) -> dict[str, np.ndarray]:
    """Fit ``{"mean": [D], "std": [D]}`` as the reference does, in chunks of bounded memory.

    Args:
      config, mapping_params: the mapping network.
      key: PRNG key for z ~ N(0, I) (ignored when ``z`` is given).
      num_samples: number of z samples (the reference uses 1,000,000).
      chunk_size: rows per mapping call; peak memory is a few ``[chunk_size, D]`` arrays.
      z: optional explicit samples ``[N, config.z_size]`` (e.g. the reference's, for parity tests).
      progress: called as ``progress(done, total)`` after every chunk.

    Chunks are combined exactly (Chan et al.'s pairwise update in float64), so the result
    does not depend on the chunk size beyond float32 rounding of the mapping itself.
    """
    D, Z = config.dlatent_size, config.z_size
    total = num_samples if z is None else int(np.shape(z)[0])
    if total < 2:
        raise ValueError("need at least 2 samples for an unbiased std")
    mapping = families.module_for(config).mapping_apply
    fn = jax.jit(lambda p, zz: undo_lrelu(mapping(config, p, zz)))
    n = 0
    mean = np.zeros(D, np.float64)
    m2 = np.zeros(D, np.float64)
    keys = None if z is not None else jax.random.split(key, -(-total // chunk_size))
    for i, start in enumerate(range(0, total, chunk_size)):
        stop = min(start + chunk_size, total)
        if z is not None:
            zc = jnp.asarray(z[start:stop], jnp.float32)
        else:
            zc = jax.random.normal(keys[i], (stop - start, Z), jnp.float32)
        v = np.asarray(fn(mapping_params, zc), np.float64)
        nb = v.shape[0]
        mb = v.mean(0)
        m2b = ((v - mb) ** 2).sum(0)
        delta = mb - mean
        tot = n + nb
        mean = mean + delta * (nb / tot)
        m2 = m2 + m2b + delta**2 * (n * nb / tot)
        n = tot
        if progress is not None:
            progress(n, total)
    return {"mean": mean.astype(np.float32), "std": np.sqrt(m2 / (n - 1)).astype(np.float32)}
