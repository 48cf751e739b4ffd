"""Face detection and landmarks with dlib, loaded lazily from the ``align`` extra.

``detect_faces(photo)`` finds every frontal face in a photo with dlib's HOG detector (built
into dlib, upsampling once as the reference's ``align_face.py``) and places 5 or 68
landmarks on each with dlib's shape predictors. Nothing is downloaded: the detector is
compiled into ``dlib-bin`` and both predictor files ship inside ``face-recognition-models``
(``pip install -e '.[align]'``). The core package imports without them; calling anything here
without them raises ``ImportError`` with the install command.

Licences (checked for dlib-bin 20.0.1.post1 and face-recognition-models 0.3.0):

- dlib (and its HOG frontal face detector, trained by Davis King on faces from Labeled Faces
  in the Wild): Boost Software License 1.0.
- ``shape_predictor_5_face_landmarks.dat`` (corners of the eyes, base of the nose): trained by
  Davis King on his own dlib 5-point face landmark dataset (7198 faces from the internet,
  annotated with imglab); dlib-models' README releases it into the public domain, and
  face-recognition-models ships it under CC0 1.0. Usable commercially: our default.
- ``shape_predictor_68_face_landmarks.dat``: trained on iBUG 300-W, whose licence excludes
  commercial use; dlib-models' README says, at the dataset authors' request, that the model
  "can't be used in a commercial product" (face-recognition-models' blanket CC0 file does not
  lift that). Use ``landmarks=68`` (the reference's exact recipe) for research only.

Coordinates are dlib's: ``x`` right, ``y`` down, in pixels of the full photo, a pixel's centre
at integer coordinates.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import math
import pathlib
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["INSTALL_HINT", "LANDMARK_MODELS", "Face", "detect_faces", "load_dlib",
           "predictor_path"]

INSTALL_HINT = "install the align extra: pip install -e '.[align]'"

#: landmark count -> the predictor file in face-recognition-models' ``models`` folder.
LANDMARK_MODELS = {5: "shape_predictor_5_face_landmarks.dat",
                   68: "shape_predictor_68_face_landmarks.dat"}


@dataclasses.dataclass(frozen=True)
class Face:
    """One detected face.

    Attributes:
      box: ``[4]`` float64 ``(left, top, right, bottom)``, the detector's box in photo pixels.
      landmarks: ``[K, 2]`` float64 ``(x, y)`` photo pixels; K = 5 (dlib's order: one eye's
        outer and inner corner, the other eye's outer and inner corner, the base of the nose)
        or 68 (iBUG 300-W's order).
    """

    box: np.ndarray
    landmarks: np.ndarray


def load_dlib() -> Any:
    """The ``dlib`` module, or ImportError naming the extra to install."""
    try:
        import dlib
    except ImportError as e:
        raise ImportError(f"face alignment needs dlib: {INSTALL_HINT}") from e
    return dlib


def predictor_path(num_landmarks: int) -> pathlib.Path:
    """The path of dlib's ``num_landmarks`` (5 or 68) predictor inside face-recognition-models.

    Found without importing that package (its ``__init__`` needs setuptools' pkg_resources).
    """
    if num_landmarks not in LANDMARK_MODELS:
        raise ValueError(f"landmarks must be 5 or 68, got {num_landmarks!r}")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face alignment needs face-recognition-models: {INSTALL_HINT}")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models"
    path = path / LANDMARK_MODELS[num_landmarks]
    if not path.is_file():
        raise ImportError(f"{path} is missing (a broken face-recognition-models install?): "
                          f"{INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=None)
def _detector() -> Any:
    return load_dlib().get_frontal_face_detector()


@functools.lru_cache(maxsize=None)
def _predictor(num_landmarks: int) -> Any:
    return load_dlib().shape_predictor(str(predictor_path(num_landmarks)))


def _detection_copy(photo: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """``photo`` reduced by an integer factor k (box filter) so its longer side is at most
    ``max_side``; returns the copy and k (1: the photo itself, no copy)."""
    k = max(1, math.ceil(max(photo.shape[:2]) / max_side))
    if k == 1:
        return photo, 1
    return np.asarray(Image.fromarray(photo).reduce(k)), k


def detect_faces(photo: np.ndarray, num_landmarks: int = 5, *, upsample: int = 1,
                 max_detect_side: int = 1600) -> list[Face]:
    """Every frontal face in ``photo`` with its landmarks, ordered left to right.

    Args:
      photo: ``[H, W, 3]`` uint8 RGB.
      num_landmarks: 5 (licence-clean, the default) or 68 (non-commercial; the reference's).
      upsample: the detector's upsampling count (reference: 1; it finds faces down to about
        40 px boxes in the image it runs on).
      max_detect_side: photos whose longer side is above this are detected on a copy reduced
        by an integer factor k (memory and time stay bounded for 8000x6000 photos; faces
        below about ``40 * k`` px are then missed). The boxes are mapped back and the
        landmarks are placed on the full-resolution photo.

    Returns:
      one :class:`Face` per detection (none: an empty list).
    """
    photo = np.ascontiguousarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be uint8 [H, W, 3], got {photo.dtype} {photo.shape}")
    dlib = load_dlib()
    predictor = _predictor(num_landmarks)
    small, k = _detection_copy(photo, max_detect_side)
    faces = []
    for r in _detector()(small, upsample):
        # Reduced pixel i covers full pixels k*i .. k*i + k - 1.
        box = np.array([r.left() * k, r.top() * k, r.right() * k + k - 1,
                        r.bottom() * k + k - 1], np.float64)
        rect = dlib.rectangle(*(int(round(v)) for v in box))
        shape = predictor(photo, rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
        faces.append(Face(box=box, landmarks=pts))
    return sorted(faces, key=lambda f: (f.box[0], f.box[1]))
