"""Faces in a photo of any size: dlib's HOG detector in two passes, each detection checked by
dlib's CNN detector, landmarks on every face.

:func:`detect_faces` runs

1. **the reference's pass**: the HOG detector upsampling the photo once, exactly as the
   reference's ``align_face.py`` (so its faces, boxes and landmarks are the reference's). Its
   80 px window then finds boxes down to about 40 px;
2. **a fine pass**, for the small faces that PULSE is for: the same detector upsampling as
   many times as a ``min_face_px`` box needs (about ``80 / 2**u`` px with ``u`` doublings;
   measured on our faces: 37 px at 1, 23 px at 2), within a pixel budget, keeping only the
   boxes the first pass did not find;
3. **a check of every box** (``verify``): dlib's MMOD CNN detector on the box's surroundings
   resized so the box is :data:`VERIFY_BOX` px wide; ``cnn_score`` is its confidence for a
   face there (its centre inside the box and the box's centre inside it), which
   :class:`pulse_jax.align.rules.FaceRules` compares with its threshold. The HOG detector's
   score alone does not separate faces from face-like things: on a 512x512 portrait it gave
   the face 1.16 and the round patch on the sitter's suit 0.12, and at 128x128 a 23 px face
   0.58 and the patch 0.04; the CNN found every face (confidence 1.04-1.09) and none of the
   patches.

Every detection is returned with its HOG ``score`` and ``cnn_score`` (``None``: the CNN
found no face there), so a caller can report the ones it does not use.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Optional

import numpy as np
from PIL import Image

from pulse_jax.align import landmarks

__all__ = ["HOG_WINDOW", "VERIFY_BOX", "Face", "cnn_score", "detect_faces", "fine_upsample"]

#: The HOG detector's window side in the image it scans.
HOG_WINDOW = 80
#: The side a box is resized to for the CNN check (its window is about 80 px too).
VERIFY_BOX = 100.0


@dataclasses.dataclass(frozen=True)
class Face:
    """One detection.

    Attributes:
      box: ``[4]`` float64 ``(left, top, right, bottom)``, inclusive, in photo pixels.
      landmarks: ``[K, 2]`` float64 ``(x, y)`` photo pixels; K = 5 (dlib's order: one eye's
        outer and inner corner, the other eye's outer and inner corner, the base of the nose)
        or 68 (iBUG 300-W's order).
      score: the HOG detector's score (dlib's threshold is 0; higher is surer).
      cnn_score: the CNN detector's confidence for this box, ``None`` when it found no face
        there, ``nan`` when the check was not run.
      upsample: the pass that found it: the HOG detector's upsampling count.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float = math.nan
    cnn_score: Optional[float] = math.nan
    upsample: int = 1

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0] + 1)


@functools.lru_cache(maxsize=None)
def _hog() -> Any:
    return landmarks.load_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _cnn() -> Any:
    dlib = landmarks.load_dlib()
    return dlib.cnn_face_detection_model_v1(str(landmarks.model_path(landmarks.CNN_DETECTOR)))


def _detection_copy(photo: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """``photo`` reduced by an integer factor k (box filter) so its longer side is at most
    ``max_side``; returns the copy and k (1: the photo itself, no copy)."""
    k = max(1, math.ceil(max(photo.shape[:2]) / max_side))
    if k == 1:
        return photo, 1
    return np.asarray(Image.fromarray(photo).reduce(k)), k


def fine_upsample(shape: tuple[int, ...], k: int, min_face_px: float, max_pixels: float) -> int:
    """The fine pass's upsampling count: enough doublings for a ``min_face_px`` box (photo
    pixels; ``k``: the detection copy's reduction), as many as ``max_pixels`` allows for the
    upsampled copy of a ``shape`` photo; 0 or 1: no fine pass is needed or possible."""
    if min_face_px <= 0:
        return 0
    need = math.ceil(math.log2(max(HOG_WINDOW * k / min_face_px, 1.0)))
    pixels = (shape[0] // k) * (shape[1] // k)
    room = int(math.floor(math.log(max(max_pixels / max(pixels, 1), 1.0), 4)))
    return max(0, min(need, room))


def _hog_boxes(small: np.ndarray, k: int, upsample: int, min_score: float
               ) -> list[tuple[np.ndarray, float]]:
    rects, scores, _ = _hog().run(small, upsample, min_score)
    # Reduced pixel i covers full pixels k*i .. k*i + k - 1.
    return [(np.array([r.left() * k, r.top() * k, r.right() * k + k - 1,
                       r.bottom() * k + k - 1], np.float64), float(s))
            for r, s in zip(rects, scores) if s >= min_score]


def _inside(point: np.ndarray, box: np.ndarray) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def _centre(box: np.ndarray) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def cnn_score(photo: np.ndarray, box: np.ndarray) -> Optional[float]:
    """The CNN detector's confidence that ``box`` holds a face (None: it found none there):
    it runs on the box's surroundings (1.25 box widths each side of its centre) resized so
    the box is :data:`VERIFY_BOX` px wide."""
    width = float(box[2] - box[0] + 1)
    scale = VERIFY_BOX / max(width, 1.0)
    img, origin = landmarks.patch(photo, box, scale, margin=1.25)
    best = None
    for d in _cnn()(np.ascontiguousarray(img), 0):
        r = d.rect
        found = landmarks.from_patch(np.array([[r.left(), r.top()], [r.right(), r.bottom()]],
                                              np.float64), origin, scale).ravel()
        if _inside(_centre(found), box) and _inside(_centre(box), found):
            best = float(d.confidence) if best is None else max(best, float(d.confidence))
    return best


def detect_faces(photo: np.ndarray, num_landmarks: int = 5, *, upsample: int = 1,
                 min_face_px: float = 20.0, min_score: float = 0.0, verify: bool = True,
                 max_detect_side: int = 1600, max_detect_pixels: float = 16e6) -> list[Face]:
    """Every frontal face in ``photo`` with its landmarks, ordered left to right (module doc).

    Args:
      photo: ``[H, W, 3]`` uint8 RGB.
      num_landmarks: 5 (licence-clean, the default) or 68 (non-commercial; the reference's).
      upsample: the first pass's upsampling count (the reference: 1).
      min_face_px: the smallest box (photo pixels) the fine pass looks for; 0: no fine pass.
      min_score: the HOG detector's threshold (dlib's: 0; lower finds more candidates, all
        of them checked by the CNN).
      verify: run the CNN check (``Face.cnn_score``); False: ``cnn_score`` is ``nan``.
      max_detect_side: photos whose longer side is above this are detected on a copy reduced
        by an integer factor k (memory and time stay bounded for 8000x6000 photos; faces
        below about ``40 * k`` px are then left to the fine pass). Landmarks and the check
        use the full photo.
      max_detect_pixels: the fine pass's budget: its upsampled copy stays under this many
        pixels (16e6: upsampling a 1000x1000 photo twice; a 4000x3000 photo gets none).

    Returns:
      one :class:`Face` per detection (none: an empty list).
    """
    photo = np.ascontiguousarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be uint8 [H, W, 3], got {photo.dtype} {photo.shape}")
    landmarks.load_dlib()
    small, k = _detection_copy(photo, max_detect_side)
    found = [(b, s, upsample) for b, s in _hog_boxes(small, k, upsample, min_score)]
    fine = fine_upsample(photo.shape, k, min_face_px, max_detect_pixels)
    if fine > upsample:
        for b, s in _hog_boxes(small, k, fine, min_score):
            if not any(_inside(_centre(b), f[0]) or _inside(_centre(f[0]), b) for f in found):
                found.append((b, s, fine))
    faces = []
    for box, score, u in found:
        pts = landmarks.place_landmarks(photo, box, num_landmarks)
        cnn = cnn_score(photo, box) if verify else math.nan
        faces.append(Face(box=box, landmarks=pts, score=score, cnn_score=cnn, upsample=u))
    return sorted(faces, key=lambda f: (f.box[0], f.box[1]))
