"""One photo in, its aligned faces out: detection, the framing quad, checks, the crop.

:func:`align_photo` chains :func:`~pulse_jax.align.detect.detect_faces`,
:func:`~pulse_jax.align.framing.face_quad` and :func:`~pulse_jax.align.crop.crop_quad`, and
decides for each detection (:class:`~pulse_jax.align.rules.FaceRules`):

- **skipped** (by choice, not a problem): not among the faces the user named, not confirmed
  as a face by the CNN check, or large enough that PULSE has nothing to add
  (:func:`~pulse_jax.align.rules.lr_size_for`);
- **refused** (it cannot give a faithful crop): **cut by the border** (an eye or nose anchor
  outside the photo, or less than ``min_inside`` (half) of the crop's area on the photo; the
  recipe pads the rest with blurred reflections, which a generator would then "restore" as
  if it were face), checked before the CNN, whose patch is cut too; or, for a confirmed
  face, a crop under ``min_face_px`` photo pixels or below the smallest LR side.

Skipped and refused faces are returned as :class:`Refused` records (``skipped`` tells them
apart), so a folder run can report them and go on; a photo with no face at all raises
:class:`~pulse_jax.align.errors.AlignError`.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Optional

import numpy as np

from pulse_jax.align import crop, detect, framing, quad as quads, rules as face_rules
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
      score, cnn_score: the detector's (:class:`pulse_jax.align.detect.Face`).
      crop_px: the side the crop covers in the photo (its quad's), photo pixels.
      lr_size: its LR side (:func:`pulse_jax.align.rules.lr_size_for`; 0: no LR).
    """

    index: int
    box: np.ndarray
    landmarks: np.ndarray
    quad: np.ndarray
    image: np.ndarray
    score: float = float("nan")
    cnn_score: Optional[float] = float("nan")
    crop_px: float = float("nan")
    lr_size: int = 0


@dataclasses.dataclass(frozen=True)
class Refused:
    """A detected face that was not aligned, with the reason (``str(error)``); ``skipped``:
    by choice (module doc), not an input problem."""

    index: int
    box: np.ndarray
    landmarks: np.ndarray
    error: AlignError
    score: float = float("nan")
    cnn_score: Optional[float] = float("nan")
    crop_px: float = float("nan")
    skipped: bool = False


def inside_fraction(quad: np.ndarray, width: int, height: int, grid: int = 32) -> float:
    """The fraction of a quad's area that lies on a ``width x height`` photo (0..1),
    estimated on a ``grid x grid`` lattice of cell centres."""
    t = (np.arange(grid) + 0.5) / grid
    uv = np.stack(np.meshgrid(t, t), axis=-1).reshape(-1, 2)
    xy = quads.unit_to_photo(uv, quad)
    ok = (xy[:, 0] >= -0.5) & (xy[:, 0] <= width - 0.5) & (xy[:, 1] >= -0.5) & \
         (xy[:, 1] <= height - 0.5)
    return float(ok.mean())


def _check_border(face: detect.Face, quad: np.ndarray, shape: tuple[int, ...],
                  min_inside: float, where: os.PathLike | None) -> None:
    h, w = shape[:2]
    a = framing.anchors(face.landmarks)
    if np.any((a < -0.5) | (a > [w - 0.5, h - 0.5])):
        raise AlignError(where, f"face at {face.box.astype(int).tolist()} is cut by the "
                                "photo's border (an eye or the nose is outside it)")
    frac = inside_fraction(quad, w, h)
    if frac < min_inside:
        raise AlignError(where, f"face at {face.box.astype(int).tolist()} is cut by the "
                                f"photo's border: only {frac:.0%} of its crop is on the photo "
                                f"(minimum {min_inside:.0%})")


def _check_size(face: detect.Face, qsize: float, min_face_px: float,
                where: os.PathLike | None) -> None:
    if qsize < min_face_px:
        raise AlignError(where, f"face at {face.box.astype(int).tolist()} is too small to "
                                f"align: its crop covers {qsize:.1f} px of the photo, under "
                                f"the minimum {min_face_px:g} px (landmarks on smaller faces "
                                "are unreliable)")


def _skip_reason(face: detect.Face, k: int, rules: face_rules.FaceRules) -> Optional[str]:
    if rules.faces is not None:
        return None if k in rules.faces else "not among the faces chosen (--faces)"
    cnn = face.cnn_score
    if rules.verify and (cnn is None or cnn < rules.min_cnn_score):
        said = ("found no face there" if cnn is None else
                f"gave it {cnn:.2f}, under {rules.min_cnn_score:g}")
        return (f"not confirmed as a face: the CNN detector {said} (HOG score "
                f"{face.score:.2f}); a face-like pattern? --faces={k} replaces it")
    return None


def align_photo(photo: np.ndarray, size: int, *, template: framing.Template = framing.FFHQ,
                num_landmarks: int = 5, rules: face_rules.FaceRules = face_rules.EVERY_FACE,
                detect_options: Optional[dict] = None, transform_size: int | None = None,
                path: os.PathLike | None = None) -> list[AlignedFace | Refused]:
    """Every face of ``photo`` aligned to ``template`` at ``size x size``.

    Args:
      photo: ``[H, W, 3]`` uint8 RGB (:func:`pulse_jax.align.photos.load_photo`).
      size: the crop's side (the generator's resolution).
      template: the framing (:data:`~pulse_jax.align.framing.FFHQ` or a points template).
      num_landmarks: 5 (default, licence-clean) or 68 (the reference's; non-commercial).
      rules: which faces are used and their LR sides (module doc; default: every confirmed
        face, no LR).
      detect_options: :func:`pulse_jax.align.detect.detect_faces`'s (``min_face_px``,
        ``min_score``, ``max_detect_side`` ...); ``verify`` follows ``rules.verify``.
      transform_size: the recipe's intermediate size (default ``4 * size``).
      path: the photo's file, named in errors.

    Returns:
      one :class:`AlignedFace` or :class:`Refused` per detected face, left to right.

    Raises:
      AlignError: no face found.
    """
    found = detect.detect_faces(photo, num_landmarks,
                                **{"verify": rules.verify, **(detect_options or {})})
    if not found:
        h, w = photo.shape[:2]
        raise AlignError(path, f"no face found in the {w}x{h} photo (dlib's frontal HOG "
                               "detector finds upright faces of about 20 px or more)")
    out: list[AlignedFace | Refused] = []
    for k, face in enumerate(found):
        quad, qsize = framing.face_quad(face.landmarks, template)
        facts = {"score": face.score, "cnn_score": face.cnn_score, "crop_px": float(qsize)}
        # The order: the user's choice; the border (a face half off the photo cannot be
        # judged by the CNN either: a real one scored 0.48); the CNN; then the size.
        chosen = rules.faces is None or k in rules.faces
        try:
            if chosen:
                _check_border(face, quad, photo.shape, rules.min_inside, path)
            reason = _skip_reason(face, k, rules)
            if reason is not None:
                out.append(Refused(k, face.box, face.landmarks, AlignError(path, reason),
                                   skipped=True, **facts))
                continue
            _check_size(face, qsize, rules.min_face_px, path)
        except AlignError as e:
            out.append(Refused(k, face.box, face.landmarks, e, **facts))
            continue
        choice = face_rules.lr_size_for(qsize, size, rules)
        if choice.refused or choice.skipped:
            where = f"face at {face.box.astype(int).tolist()}"
            out.append(Refused(k, face.box, face.landmarks,
                               AlignError(path, f"{where}: {choice.refused or choice.skipped}"),
                               skipped=choice.skipped is not None, **facts))
            continue
        image = crop.crop_quad(photo, quad, size, qsize=qsize, transform_size=transform_size)
        out.append(AlignedFace(k, face.box, face.landmarks, quad, image,
                               lr_size=choice.lr_size, **facts))
    return out
