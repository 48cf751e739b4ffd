"""One photo in, its aligned faces out: detection, the framing quad, checks, the crop.

:func:`align_photo` chains :func:`~pulse_jax.align.landmarks.detect_faces`,
:func:`~pulse_jax.align.framing.face_quad` and :func:`~pulse_jax.align.crop.crop_quad`,
refusing faces that cannot give a faithful crop:

- **too small**: a crop quad under ``min_face_px`` photo pixels a side (default 64: the
  eyes are then about 16 px apart, where dlib's landmarks wander by several percent of the
  crop; the HOG detector itself stops near 40 px boxes);
- **cut by the border**: an eye or nose anchor outside the photo, or less than
  ``min_inside`` (half) of the crop's area on the photo. The recipe pads the rest with
  blurred reflections, which a generator would then "restore" as if it were face.

A refused face is returned as a :class:`Refused` record, so a folder run can report it and go
on; a photo with no face at all raises :class:`~pulse_jax.align.errors.AlignError`.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from pulse_jax.align import crop, framing, landmarks, quad as quads
from pulse_jax.align.errors import AlignError

__all__ = ["AlignedFace", "Refused", "align_photo", "inside_fraction"]


@dataclasses.dataclass(frozen=True)
class AlignedFace:
    """One aligned face.

    Attributes:
      index: its place among the photo's detections (left to right, from 0).
      box: ``[4]`` the detector's box (left, top, right, bottom), photo pixels.
      landmarks: ``[K, 2]`` photo pixels (K = 5 or 68).
      quad: ``[4, 2]`` where the crop lies in the photo (TL, BL, BR, TR); with the crop's
        size it inverts the crop (:mod:`pulse_jax.align.quad`, :mod:`pulse_jax.align.paste`).
      image: ``[S, S, 3]`` uint8, the aligned crop.
    """

    index: int
    box: np.ndarray
    landmarks: np.ndarray
    quad: np.ndarray
    image: np.ndarray


@dataclasses.dataclass(frozen=True)
class Refused:
    """A detected face that was not aligned, with the reason (``str(error)``)."""

    index: int
    box: np.ndarray
    landmarks: np.ndarray
    error: AlignError


def inside_fraction(quad: np.ndarray, width: int, height: int, grid: int = 32) -> float:
    """The fraction of a quad's area that lies on a ``width x height`` photo (0..1),
    estimated on a ``grid x grid`` lattice of cell centres."""
    t = (np.arange(grid) + 0.5) / grid
    uv = np.stack(np.meshgrid(t, t), axis=-1).reshape(-1, 2)
    xy = quads.unit_to_photo(uv, quad)
    ok = (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) & \
         (xy[:, 1] <= height - 0.5)
    return float(ok.mean())


def _check(face: landmarks.Face, quad: np.ndarray, qsize: float, shape: tuple[int, ...],
           min_face_px: float, min_inside: float, where: os.PathLike | None) -> None:
    h, w = shape[:2]
    if qsize < min_face_px:
        raise AlignError(where, f"face at {face.box.astype(int).tolist()} is too small to "
                                f"align: its crop covers {qsize:.0f} px of the photo, under "
                                f"the minimum {min_face_px:g} px (landmarks on smaller faces "
                                "are unreliable)")
    a = framing.anchors(face.landmarks)
    if np.any((a < -0.5) | (a > [w - 0.5, h - 0.5])):
        raise AlignError(where, f"face at {face.box.astype(int).tolist()} is cut by the "
                                "photo's border (an eye or the nose is outside it)")
    frac = inside_fraction(quad, w, h)
    if frac < min_inside:
        raise AlignError(where, f"face at {face.box.astype(int).tolist()} is cut by the "
                                f"photo's border: only {frac:.0%} of its crop is on the photo "
                                f"(minimum {min_inside:.0%})")


def align_photo(photo: np.ndarray, size: int, *, template: framing.Template = framing.FFHQ,
                num_landmarks: int = 5, min_face_px: float = 64.0, min_inside: float = 0.5,
                max_detect_side: int = 1600, transform_size: int | None = None,
                path: os.PathLike | None = None) -> list[AlignedFace | Refused]:
    """Every face of ``photo`` aligned to ``template`` at ``size x size``.

    Args:
      photo: ``[H, W, 3]`` uint8 RGB (:func:`pulse_jax.align.photos.load_photo`).
      size: the crop's side (the generator's resolution).
      template: the framing (:data:`~pulse_jax.align.framing.FFHQ` or a points template).
      num_landmarks: 5 (default, licence-clean) or 68 (the reference's; non-commercial).
      min_face_px, min_inside: the refusal thresholds above.
      max_detect_side: detection runs on a copy reduced to this longer side.
      transform_size: the recipe's intermediate size (default ``4 * size``).
      path: the photo's file, named in errors.

    Returns:
      one :class:`AlignedFace` or :class:`Refused` per detected face, left to right.

    Raises:
      AlignError: no face found.
    """
    found = landmarks.detect_faces(photo, num_landmarks, max_detect_side=max_detect_side)
    if not found:
        h, w = photo.shape[:2]
        raise AlignError(path, f"no face found in the {w}x{h} photo (dlib's frontal HOG "
                               "detector finds upright faces of about 40 px or more)")
    out: list[AlignedFace | Refused] = []
    for k, face in enumerate(found):
        quad, qsize = framing.face_quad(face.landmarks, template)
        try:
            _check(face, quad, qsize, photo.shape, min_face_px, min_inside, path)
        except AlignError as e:
            out.append(Refused(k, face.box, face.landmarks, e))
            continue
        image = crop.crop_quad(photo, quad, size, qsize=qsize, transform_size=transform_size)
        out.append(AlignedFace(k, face.box, face.landmarks, quad, image))
    return out
