"""How much PULSE's answers for one face disagree: the per-pixel spread over its restarts.

Every face PULSE returns is invented above what the LR image fixes. Where the restarts that
explain the LR image equally well (all within eps) draw different pixels, the result is one
guess among many; where they agree, the LR image (or the generator's prior) decides.
:func:`spread` measures that: the standard deviation over restarts of each pixel's luminance
(Rec. 601 weights; population deviation, over the restarts within eps when at least two are,
else over all), ``[N, R, R]`` in [0, 0.5]. Its mean over the image (the aligned crop is the
face) is the face's one number (:func:`score`); :func:`pulse_jax.pictures.variability_pair`
draws it beside the face.

What it is not: a calibrated probability or an error bar on the truth. It is the spread of
PULSE's own answers under this generator and these random starts; a generator that always
draws the same face would show none, and more restarts estimate it better. With one restart
it cannot be computed, and nothing here pretends otherwise (:func:`spread` raises).
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["LUMA", "score", "spread"]

#: Rec. 601 luma weights for R, G, B.
LUMA = (0.299, 0.587, 0.114)
def spread(restart_hr: Any, within_eps: Any) -> tuple[Any, Any]:
    """The variability map of each face and the number of restarts it is over.

    Args:
      restart_hr: ``[N, K, R, R, 3]`` in [0, 1], every restart's HR image (K >= 2).
      within_eps: ``[N, K]`` bool, which restarts reached eps.

    Returns:
      ``([N, R, R]`` float32 in [0, 0.5], ``[N]`` int32 restarts used): over the restarts
      within eps when a face has at least two, else over all its restarts.
    """
    restart_hr = jnp.asarray(restart_hr, jnp.float32)
    if restart_hr.ndim != 5 or restart_hr.shape[1] < 2:
        raise ValueError("the variability map needs at least 2 restarts per face "
                         f"([N, K >= 2, R, R, 3]), got {tuple(restart_hr.shape)}")
    ok = jnp.asarray(within_eps, bool)
    use = jnp.where(jnp.sum(ok, axis=1, keepdims=True) >= 2, ok, True)
    luma = restart_hr @ jnp.asarray(LUMA, jnp.float32)                    # [N, K, R, R]
    w = use.astype(jnp.float32)[:, :, None, None]
    n = jnp.sum(w, axis=1)
    mean = jnp.sum(luma * w, axis=1) / n
    var = jnp.sum(jnp.square(luma - mean[:, None]) * w, axis=1) / n
    return jnp.sqrt(var), jnp.sum(use, axis=1).astype(jnp.int32)


def score(maps: Any) -> np.ndarray:
    """``[N, R, R]`` maps -> ``[N]``: each face's mean spread."""
    return np.asarray(maps, np.float64).mean(axis=(1, 2))
