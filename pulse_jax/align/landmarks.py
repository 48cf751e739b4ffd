"""dlib, loaded lazily from the ``align`` extra: its model files and the landmarks.

:func:`place_landmarks` puts 5 or 68 landmarks on a detected face with dlib's shape
predictors (:mod:`pulse_jax.align.detect` finds the faces). Nothing is downloaded: dlib's
HOG detector is compiled into ``dlib-bin``; the predictors and the CNN face detector ship
inside ``face-recognition-models`` (``pip install -e '.[align]'``). The core package
imports without them; calling anything here without them raises ``ImportError`` with the
install command.

Licences (checked for dlib-bin 20.0.1.post1 and face-recognition-models 0.3.0):

- dlib (and its HOG frontal face detector, trained by Davis King on faces from Labeled Faces
  in the Wild): Boost Software License 1.0.
- ``shape_predictor_5_face_landmarks.dat`` (corners of the eyes, base of the nose): trained by
  Davis King on his own dlib 5-point face landmark dataset (7198 faces from the internet,
  annotated with imglab); dlib-models' README releases it into the public domain, and
  face-recognition-models ships it under CC0 1.0. Usable commercially: our default.
- ``mmod_human_face_detector.dat`` (the CNN detector that checks every detection,
  :mod:`pulse_jax.align.detect`): trained by Davis King on his dlib face detection dataset
  (faces he labelled in images of ImageNet, AFLW, Pascal VOC, VGG, WIDER and FaceScrub);
  shipped under CC0 1.0 by face-recognition-models, as dlib-models' README releases it.
- ``shape_predictor_68_face_landmarks.dat``: trained on iBUG 300-W, whose licence excludes
  commercial use; dlib-models' README says, at the dataset authors' request, that the model
  "can't be used in a commercial product" (face-recognition-models' blanket CC0 file does not
  lift that). Use ``landmarks=68`` (the reference's exact recipe) for research only.

Coordinates are dlib's: ``x`` right, ``y`` down, in pixels of the full photo, a pixel's centre
at integer coordinates.
"""

from __future__ import annotations

import functools
import importlib.util
import pathlib
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["CNN_DETECTOR", "INSTALL_HINT", "LANDMARK_MODELS", "LANDMARK_MIN_BOX",
           "from_patch", "load_dlib", "model_path", "patch", "place_landmarks",
           "predictor_path", "to_patch"]

INSTALL_HINT = "install the align extra: pip install -e '.[align]'"

#: dlib's MMOD CNN face detector's file (licence above).
CNN_DETECTOR = "mmod_human_face_detector.dat"

#: landmark count -> the predictor file in face-recognition-models' ``models`` folder.
LANDMARK_MODELS = {5: "shape_predictor_5_face_landmarks.dat",
                   68: "shape_predictor_68_face_landmarks.dat"}


def load_dlib() -> Any:
    """The ``dlib`` module, or ImportError naming the extra to install."""
    try:
        import dlib
    except ImportError as e:
        raise ImportError(f"face alignment needs dlib: {INSTALL_HINT}") from e
    return dlib


def model_path(name: str) -> pathlib.Path:
    """The path of model file ``name`` inside face-recognition-models' ``models`` folder.

    Found without importing that package (its ``__init__`` needs setuptools' pkg_resources).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"face alignment needs face-recognition-models: {INSTALL_HINT}")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise ImportError(f"{path} is missing (a broken face-recognition-models install?): "
                          f"{INSTALL_HINT}")
    return path


def predictor_path(num_landmarks: int) -> pathlib.Path:
    """The path of dlib's ``num_landmarks`` (5 or 68) predictor inside face-recognition-models."""
    if num_landmarks not in LANDMARK_MODELS:
        raise ValueError(f"landmarks must be 5 or 68, got {num_landmarks!r}")
    return model_path(LANDMARK_MODELS[num_landmarks])


@functools.lru_cache(maxsize=None)
def _predictor(num_landmarks: int) -> Any:
    return load_dlib().shape_predictor(str(predictor_path(num_landmarks)))


#: Boxes narrower than this (photo pixels) get their landmarks on an upscaled copy: dlib's
#: predictors were trained on faces of a hundred pixels and more.
LANDMARK_MIN_BOX = 80.0


def patch(photo: np.ndarray, box: np.ndarray, scale: float, margin: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """The photo around ``box`` (``margin`` box widths on each side of its centre), resized
    by ``scale`` (bicubic); returns the patch and its origin ``[x0, y0]`` in photo pixels.
    Patch pixel ``j`` lies at photo coordinate ``x0 + (j + 0.5) / scale - 0.5``."""
    h, w = photo.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    half = margin * max(box[2] - box[0], box[3] - box[1], 1.0)
    x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
    x1, y1 = int(min(w, np.ceil(cx + half) + 1)), int(min(h, np.ceil(cy + half) + 1))
    img = Image.fromarray(np.ascontiguousarray(photo[y0:y1, x0:x1]))
    if scale != 1.0:
        img = img.resize((max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))),
                         Image.BICUBIC)
    return np.asarray(img), np.array([x0, y0], np.float64)


def to_patch(xy: np.ndarray, origin: np.ndarray, scale: float) -> np.ndarray:
    """Photo coordinates -> the coordinates of :func:`patch`'s pixels (centres at integers)."""
    return (np.asarray(xy, np.float64) - origin + 0.5) * scale - 0.5


def from_patch(xy: np.ndarray, origin: np.ndarray, scale: float) -> np.ndarray:
    """The inverse of :func:`to_patch`."""
    return origin + (np.asarray(xy, np.float64) + 0.5) / scale - 0.5


def place_landmarks(photo: np.ndarray, box: np.ndarray, num_landmarks: int = 5) -> np.ndarray:
    """``[K, 2]`` landmarks (photo pixels) of the face in ``box`` (left, top, right, bottom).

    A box of :data:`LANDMARK_MIN_BOX` px or more is read on the photo itself, as the
    reference's ``align_face.py`` does; a smaller one on a bicubic copy of its surroundings
    upscaled until the box is that wide, so a 20 px face gets the predictor it was trained
    for, and the points are mapped back to the photo.
    """
    dlib = load_dlib()
    predictor = _predictor(num_landmarks)
    box = np.asarray(box, np.float64)
    width = box[2] - box[0] + 1
    if width >= LANDMARK_MIN_BOX:
        shape = predictor(photo, dlib.rectangle(*(int(round(v)) for v in box)))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    scale = LANDMARK_MIN_BOX / width
    img, origin = patch(photo, box, scale, margin=1.5)
    corners = to_patch(box.reshape(2, 2), origin, scale).ravel()
    shape = predictor(np.ascontiguousarray(img), dlib.rectangle(*(int(round(v)) for v in corners)))
    pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    return from_patch(pts, origin, scale)
