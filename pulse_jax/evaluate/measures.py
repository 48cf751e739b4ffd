"""What an evaluation measures of one face: image quality against the truth (dm-pix's PSNR
and SSIM), LR consistency, identity, the spread of the restarts, and the baselines.

Images here are float32 ``[R, R, 3]`` in [0, 1] as written to disk (8-bit), so every figure
recomputes from the files.
"""

from __future__ import annotations

import itertools
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax import degrade
from pulse_jax.evaluate import identity

__all__ = ["BASELINES", "baseline_upsample", "identity_of", "image_quality", "lr_psnr",
           "restart_identity"]

#: The baselines every face is compared with: the observation upsampled by ``jax.image``.
BASELINES = ("bicubic", "nearest")


def _pix():
    try:
        import dm_pix
    except ImportError as e:
        raise ImportError("evaluation needs dm-pix: install the evaluate extra: "
                          "pip install -e '.[evaluate]'") from e
    return dm_pix


def image_quality(image: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``{"psnr": dB, "ssim": ...}`` of ``image`` against ``truth`` (dm-pix, peak 1; SSIM
    with its default 11 px Gaussian window, averaged over the channels)."""
    pix = _pix()
    a, b = jnp.asarray(image, jnp.float32), jnp.asarray(truth, jnp.float32)
    return {"psnr": float(pix.psnr(a, b)), "ssim": float(pix.ssim(a, b))}


def lr_psnr(op: degrade.Operator, image: np.ndarray, observation: np.ndarray
            ) -> Optional[float]:
    """PSNR (dB) of ``op(image)`` against the observation: how well an image explains the LR
    (None when they are equal: no finite figure, and JSON has no infinity)."""
    y = np.asarray(op(jnp.asarray(image[None], jnp.float32)))[0]
    mse = float(np.mean((y.astype(np.float64) - observation) ** 2))
    return None if mse == 0 else float(10 * np.log10(1.0 / mse))


def baseline_upsample(observation: np.ndarray, resolution: int, method: str) -> np.ndarray:
    """The observation ``[h, w, c]`` resized to ``[R, R, 3]`` by ``jax.image.resize``
    (``bicubic`` or ``nearest``), gray repeated to RGB, clipped to [0, 1]."""
    if method not in BASELINES:
        raise ValueError(f"baseline must be one of {BASELINES}, got {method!r}")
    y = jnp.asarray(observation, jnp.float32)
    if y.shape[-1] == 1:
        y = jnp.repeat(y, 3, axis=-1)
    up = jax.image.resize(y, (resolution, resolution, 3), method=method)
    return np.clip(np.asarray(up), 0.0, 1.0)


def identity_of(image: np.ndarray, truth_descriptor: Optional[np.ndarray],
                truth_error: Optional[str]) -> dict[str, Any]:
    """``identity_distance`` (None when a face is missing), ``same_identity`` and
    ``identity_error`` (why there is no distance) of ``image`` against the truth's
    descriptor."""
    if truth_descriptor is None:
        return {"identity_distance": None, "same_identity": None,
                "identity_error": f"truth: {truth_error}"}
    try:
        d = float(np.linalg.norm(identity.face_descriptor(image) - truth_descriptor))
    except identity.FaceNotFoundError as e:
        return {"identity_distance": None, "same_identity": None, "identity_error": str(e)}
    return {"identity_distance": d, "same_identity": d < identity.SAME_IDENTITY,
            "identity_error": None}


def restart_identity(images: Optional[np.ndarray]) -> Optional[float]:
    """The mean identity distance between every pair of restarts' images ``[K, R, R, 3]``
    (restarts where no face is found are left out); None with fewer than two."""
    if images is None or len(images) < 2:
        return None
    descs = []
    for im in images:
        try:
            descs.append(identity.face_descriptor(im))
        except identity.FaceNotFoundError:
            pass
    pairs = [float(np.linalg.norm(a - b)) for a, b in itertools.combinations(descs, 2)]
    return float(np.mean(pairs)) if pairs else None
