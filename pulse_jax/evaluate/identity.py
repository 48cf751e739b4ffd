"""Is it the same person? dlib's face-recognition ResNet, offline.

The measure is the Euclidean distance between two 128-d descriptors of dlib's
``dlib_face_recognition_resnet_model_v1.dat`` (shipped in face-recognition-models, which the
align extra installs; dlib reports 99.38% on LFW with pairs under :data:`SAME_IDENTITY`
called the same person). Each descriptor is computed as dlib's own example does:

1. the image is resized (Lanczos) so its longer side is :data:`DETECT_SIDE` px: the HOG
   detector's 80 px window then fits the face of a crop framed like the generator's faces,
   from 64x64 to 1024x1024;
2. the face is found by the HOG detector, or by the MMOD CNN detector where HOG finds none
   (the largest box when there are several);
3. dlib's 5-point landmarks place a 150x150 chip (``get_face_chip``, padding 0.25), and the
   network maps the chip to its descriptor.

An image where neither detector finds a face raises :class:`FaceNotFoundError`; no number is
made up for it. Measured on 60 held-out UTKFace faces at 64x64: 59 found (58 by HOG), a
face against its own slight blur (Gaussian, 0.7 px) 0.11-0.23, two different people median
0.70 (12% of pairs under 0.6: at 64 px, children and the very old of one group look alike
to the network; ``docs/model_card.md``; ``python -m experiments.identity_check``).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
from PIL import Image

from pulse_jax.align import landmarks

__all__ = ["CHIP_SIZE", "DETECT_SIDE", "FaceNotFoundError", "RECOGNITION_MODEL",
           "SAME_IDENTITY", "face_descriptor", "identity_distance"]

#: The network's file in face-recognition-models' ``models`` folder.
RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
#: Distances under this are "the same person" (dlib's threshold for its LFW figure).
SAME_IDENTITY = 0.6
#: The longer side an image is resized to before detection.
DETECT_SIDE = 256
#: The side of the aligned chip the network reads (the size it was trained on).
CHIP_SIZE = 150


class FaceNotFoundError(ValueError):
    """No face was found in an image given to :func:`face_descriptor`."""


@functools.lru_cache(maxsize=None)
def _network() -> Any:
    dlib = landmarks.load_dlib()
    return dlib.face_recognition_model_v1(str(landmarks.model_path(RECOGNITION_MODEL)))


@functools.lru_cache(maxsize=None)
def _detectors() -> tuple[Any, Any, Any]:
    dlib = landmarks.load_dlib()
    cnn = dlib.cnn_face_detection_model_v1(str(landmarks.model_path(landmarks.CNN_DETECTOR)))
    shape = dlib.shape_predictor(str(landmarks.predictor_path(5)))
    return dlib.get_frontal_face_detector(), cnn, shape


def _as_uint8(image: Any) -> np.ndarray:
    x = np.asarray(image)
    if x.ndim != 3 or x.shape[-1] != 3:
        raise ValueError(f"an RGB image [H, W, 3] is needed, got shape {x.shape}")
    if x.dtype == np.uint8:
        return np.ascontiguousarray(x)
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise ValueError("the image has NaN or infinite values")
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _resized(x: np.ndarray, side: int) -> np.ndarray:
    h, w = x.shape[:2]
    s = side / max(h, w)
    if s == 1.0:
        return x
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(x).resize(size, Image.LANCZOS))


def face_descriptor(image: Any) -> np.ndarray:
    """The ``[128]`` float64 descriptor of the face in ``image`` (module doc).

    Args:
      image: ``[H, W, 3]`` RGB, floats in [0, 1] (rounded to 8 bits) or uint8; any size.

    Raises:
      FaceNotFoundError: neither detector finds a face.
      ValueError: not an RGB image, or non-finite values.
      ImportError: the align extra is not installed.
    """
    raw = _as_uint8(image)
    x = _resized(raw, DETECT_SIDE)
    hog, cnn, shape = _detectors()
    boxes = list(hog(x, 0)) or [d.rect for d in cnn(x, 0)]
    if not boxes:
        raise FaceNotFoundError(f"no face found in the {raw.shape[1]}x{raw.shape[0]} image "
                                "(neither dlib's HOG nor its CNN detector)")
    box = max(boxes, key=lambda r: r.area())
    dlib = landmarks.load_dlib()
    chip = dlib.get_face_chip(x, shape(x, box), size=CHIP_SIZE, padding=0.25)
    return np.asarray(_network().compute_face_descriptor(chip), np.float64)


def identity_distance(a: Any, b: Any) -> float:
    """The distance between the faces in two RGB images (any sizes; floats in [0, 1] or
    uint8): 0 for an image and itself, under :data:`SAME_IDENTITY` (0.6) for the same
    person as dlib's network sees it. Raises :class:`FaceNotFoundError` naming the image
    (``a`` or ``b``) where no face is found."""
    descs = []
    for label, image in (("a", a), ("b", b)):
        try:
            descs.append(face_descriptor(image))
        except FaceNotFoundError as e:
            raise FaceNotFoundError(f"image {label}: {e}") from None
    return float(np.linalg.norm(descs[0] - descs[1]))
