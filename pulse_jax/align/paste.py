"""Paste-back: a face made from an aligned crop goes back into its photo.

:func:`paste_back` warps a square face (any resolution: the crop's, the generator's) through
the inverse of the crop's transform, its quad, and blends it in with a feathered mask: 1 well
inside the crop, falling smoothly (a smoothstep) to 0 over the outer ``feather`` fraction of
the crop's side, 0 outside it. So a photo goes in and a photo of the same size comes out,
every pixel outside the crop's quad bit-identical. Pure numpy and Pillow, no JAX.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from pulse_jax.align import quad as quads

__all__ = ["feather_mask", "paste_back", "warp_to_photo"]


def _as_uint8(face: np.ndarray) -> np.ndarray:
    a = np.asarray(face)
    if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] != a.shape[1]:
        raise ValueError(f"face must be a square [S, S, 3] image, got {a.shape}")
    if a.dtype == np.uint8:
        return a
    return np.rint(np.clip(np.nan_to_num(a.astype(np.float32)), 0.0, 1.0) * 255).astype(np.uint8)


def _region(quad: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The photo's pixel box (x0, y0, x1, y1), exclusive ends, that can touch the quad."""
    x0 = max(int(math.floor(quad[:, 0].min())) - 1, 0)
    y0 = max(int(math.floor(quad[:, 1].min())) - 1, 0)
    x1 = min(int(math.ceil(quad[:, 0].max())) + 2, width)
    y1 = min(int(math.ceil(quad[:, 1].max())) + 2, height)
    return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)


def feather_mask(uv: np.ndarray, feather: float) -> np.ndarray:
    """Blend weights ``[...]`` in [0, 1] for crop coordinates ``uv [..., 2]``: a smoothstep
    from 0 at the crop's edge to 1 at ``feather`` (a fraction of the side) inside it."""
    d = np.minimum(np.minimum(uv[..., 0], 1.0 - uv[..., 0]),
                   np.minimum(uv[..., 1], 1.0 - uv[..., 1]))
    if feather <= 0:
        return (d >= 0).astype(np.float32)
    t = np.clip(d / feather, 0.0, 1.0).astype(np.float32)
    return t * t * (3.0 - 2.0 * t)


def warp_to_photo(face: np.ndarray, quad: np.ndarray, box: tuple[int, int, int, int]
                  ) -> np.ndarray:
    """``face [S, S, 3]`` uint8 resampled (bicubic) onto the photo pixels of ``box`` =
    ``(x0, y0, x1, y1)`` through the crop transform ``quad``: ``[y1-y0, x1-x0, 3]`` uint8.
    A face much larger than its quad is first reduced with Lanczos, so it does not alias."""
    img = Image.fromarray(face, "RGB")
    qsize = quads.quad_size(quad)
    if img.size[0] > 1.5 * qsize:
        side = max(int(round(qsize)), 1)
        img = img.resize((side, side), Image.LANCZOS)
    s = img.size[0]
    x0, y0, x1, y1 = box
    basis = np.stack([quad[3] - quad[0], quad[1] - quad[0]], axis=1)
    inv = s * np.linalg.inv(basis)  # photo offset -> face (continuous) coordinates
    # Pillow samples output pixel (X, Y) at continuous (X + 0.5, Y + 0.5), which is photo
    # pixel (x0 + X, y0 + Y); photo pixel p lies at face coordinate inv @ (p - quad[0]).
    shift = inv @ (np.array([x0 - 0.5, y0 - 0.5]) - quad[0])
    coeffs = (inv[0, 0], inv[0, 1], shift[0], inv[1, 0], inv[1, 1], shift[1])
    out = img.transform((x1 - x0, y1 - y0), Image.AFFINE, coeffs, Image.BICUBIC)
    return np.asarray(out)


def paste_back(photo: np.ndarray, face: np.ndarray, quad: np.ndarray,
               feather: float = 0.05) -> np.ndarray:
    """``photo`` with ``face`` blended in where its aligned crop came from.

    Args:
      photo: ``[H, W, 3]`` uint8, the original photo.
      face: ``[S, S, 3]``, uint8 or float in [0, 1] (e.g. PULSE's HR result), any S.
      quad: ``[4, 2]`` the crop's quad in the photo (``AlignedFace.quad``, or the manifest's
        ``quad``).
      feather: the mask's soft edge as a fraction of the crop's side (default 5%).

    Returns:
      ``[H, W, 3]`` uint8; pixels outside the quad are ``photo``'s exactly.
    """
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be uint8 [H, W, 3], got {photo.dtype} {photo.shape}")
    quad = np.asarray(quad, np.float64)
    if quad.shape != (4, 2):
        raise ValueError(f"quad must be [4, 2], got {quad.shape}")
    out = photo.copy()
    box = _region(quad, photo.shape[1], photo.shape[0])
    if box is None:
        return out
    x0, y0, x1, y1 = box
    warped = warp_to_photo(_as_uint8(face), quad, box).astype(np.float32)
    ys, xs = np.mgrid[y0:y1, x0:x1]
    m = feather_mask(quads.photo_to_unit(np.stack([xs, ys], -1), quad), feather)[..., None]
    region = photo[y0:y1, x0:x1].astype(np.float32)
    blended = np.rint(region + (warped - region) * m)
    out[y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)
    return out
