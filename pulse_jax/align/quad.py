"""Crop quads: where an aligned crop lies in its photo, and the maps between the two.

A quad is ``[4, 2]`` float64 ``(x, y)`` photo pixels, in the order NVIDIA's FFHQ recipe and
Pillow's ``QUAD`` transform use: top-left, bottom-left, bottom-right, top-right corner of the
crop (the crop's outer pixel edges, not pixel centres), in dlib's convention (pixel centres at
integer coordinates). Every quad made here is a square (a rotated, scaled, shifted copy of the
crop), so the map between crop and photo is affine:

    photo = TL + u * (TR - TL) + v * (BL - TL),   u, v in [0, 1] across the crop,

and a crop pixel ``(i, j)`` of an ``S x S`` crop sits at ``u = (i + 0.5) / S``,
``v = (j + 0.5) / S``. :func:`photo_to_unit` and :func:`unit_to_photo` apply the map;
``unit`` coordinates are also the templates' coordinates.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ffhq_points", "ffhq_quad", "ffhq_quad_from_points", "photo_to_unit",
           "quad_from_similarity", "quad_size", "similarity_fit", "unit_to_photo"]


def ffhq_points(landmarks68: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The FFHQ recipe's inputs from dlib's 68 landmarks ``[..., 68, 2]``: the left eye
    centre (mean of points 36-41), the right eye centre (42-47) and the mouth centre (mean of
    the corners 48 and 54), each ``[..., 2]``."""
    lm = np.asarray(landmarks68, np.float64)
    return (lm[..., 36:42, :].mean(axis=-2), lm[..., 42:48, :].mean(axis=-2),
            (lm[..., 48, :] + lm[..., 54, :]) * 0.5)


def ffhq_quad(landmarks68: np.ndarray) -> tuple[np.ndarray, float]:
    """NVIDIA's FFHQ crop quad from dlib's 68 landmarks (the reference's arithmetic).

    The quad is :func:`ffhq_quad_from_points` of :func:`ffhq_points`.

    Args:
      landmarks68: ``[68, 2]`` photo pixels.

    Returns:
      ``(quad [4, 2], qsize)``: the quad (TL, BL, BR, TR) and its side in pixels.
    """
    lm = np.asarray(landmarks68, np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected [68, 2] landmarks, got {lm.shape}")
    return ffhq_quad_from_points(*ffhq_points(lm))


def ffhq_quad_from_points(eye_left: np.ndarray, eye_right: np.ndarray,
                          mouth: np.ndarray) -> tuple[np.ndarray, float]:
    """NVIDIA's FFHQ crop quad from the two eye centres and the mouth centre (``[2]`` photo
    pixels each; ``eye_left`` is the one on the image's left).

    With ``e`` the eyes' midpoint, ``e2e`` left eye to right eye and ``e2m`` eyes to mouth: the
    crop's x axis is ``e2e`` turned towards the perpendicular of ``e2m``, of half-length
    ``max(2 |e2e|, 1.8 |e2m|)``; y is x turned 90 degrees; the centre is ``e + 0.1 e2m``.

    Returns:
      ``(quad [4, 2], qsize)``: the quad (TL, BL, BR, TR) and its side in pixels.
    """
    eye_left = np.asarray(eye_left, np.float64)
    eye_right = np.asarray(eye_right, np.float64)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    eye_to_mouth = np.asarray(mouth, np.float64) - eye_avg
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def quad_size(quad: np.ndarray) -> float:
    """The side of a square quad in photo pixels (its top edge's length)."""
    q = np.asarray(quad, np.float64)
    return float(np.hypot(*(q[3] - q[0])))


def unit_to_photo(uv: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Crop coordinates ``[..., 2]`` in [0, 1] (u right, v down) -> photo pixels ``[..., 2]``."""
    q = np.asarray(quad, np.float64)
    uv = np.asarray(uv, np.float64)
    return q[0] + uv[..., :1] * (q[3] - q[0]) + uv[..., 1:] * (q[1] - q[0])


def photo_to_unit(xy: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """Photo pixels ``[..., 2]`` -> crop coordinates ``[..., 2]`` (inside the crop: [0, 1])."""
    q = np.asarray(quad, np.float64)
    basis = np.stack([q[3] - q[0], q[1] - q[0]], axis=1)  # columns: u and v directions
    return (np.asarray(xy, np.float64) - q[0]) @ np.linalg.inv(basis).T


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex]:
    """Least-squares similarity (rotation, uniform scale, shift; no reflection) ``src -> dst``.

    Points are ``[K, 2]``; the transform is ``z -> a z + b`` on complex numbers ``x + i y``,
    whose least-squares solution is closed-form: ``a = sum(d' conj(s')) / sum(|s'|^2)`` over
    the centred points, ``b = mean(d) - a mean(s)``.

    Returns:
      ``(a, b)`` complex.
    """
    s = np.asarray(src, np.float64) @ [1, 1j]
    d = np.asarray(dst, np.float64) @ [1, 1j]
    if s.shape != d.shape or s.size < 2:
        raise ValueError(f"need two matching sets of >= 2 points, got {src!r} and {dst!r}")
    sc, dc = s - s.mean(), d - d.mean()
    denom = float(np.sum(np.abs(sc) ** 2))
    if denom == 0.0:
        raise ValueError("the source points coincide: no similarity fits them")
    a = complex(np.sum(dc * np.conj(sc)) / denom)
    return a, complex(d.mean() - a * s.mean())


def quad_from_similarity(landmarks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """The square quad that puts ``landmarks`` (photo pixels ``[K, 2]``) closest (least
    squares, by a similarity) to ``template`` (``[K, 2]`` crop coordinates in [0, 1]).

    Fits the map crop -> photo, so its residuals are measured in photo pixels, and returns the
    images of the crop's corners (TL, BL, BR, TR).
    """
    a, b = similarity_fit(template, landmarks)
    corners = np.array([0, 1j, 1 + 1j, 1], np.complex128)
    z = a * corners + b
    return np.stack([z.real, z.imag], axis=1)
