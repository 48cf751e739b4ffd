r"""A generator's framing template, measured on faces it draws.

::

  pulse-jax template --checkpoint=DIR [--samples=200] [--seed=0] [--write]

(:mod:`pulse_jax.cli.template_command`, calling :func:`measure_checkpoint` and
:func:`write_template`) renders ``--samples`` random faces with the checkpoint's generator
(z ~ N(0, I) through its mapping network, one w for every layer, random noise:
``Generator.sample``), upscales small
ones bicubically to 256 px (dlib's HOG detector misses faces under about 80 px), places dlib's
5 and 68 landmarks on each face found, and prints the template (trimmed-mean anchor positions in
[0, 1] crop coordinates, :class:`~pulse_jax.align.framing.Template`) as JSON, with the eye
distance, eye height and mouth height that 68 landmarks give. ``--write`` also stores it in
the checkpoint's manifest under ``align_template`` (the checkpoint is rewritten through
:func:`pulse_jax.weights.save_generator`, atomically, arrays and other fields unchanged), so
``pulse-jax align --template=checkpoint`` frames faces for that generator.

:func:`estimate_template` works on any square aligned faces (e.g. a training set's).
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Iterable

import numpy as np
from PIL import Image

from pulse_jax.align import detect, framing, quad as quads

__all__ = ["estimate_template", "fit_ffhq5", "framing_summary", "generator_samples",
           "measure_checkpoint", "write_template"]

_DETECT_SIDE = 256


def generator_samples(generator, n: int, seed: int = 0, batch: int = 50) -> np.ndarray:
    """``n`` random faces ``[n, R, R, 3]`` uint8 from ``generator`` (needs its mapping)."""
    import jax
    from pulse_jax import images
    batch = min(batch, n)
    keys = jax.random.split(jax.random.PRNGKey(seed), -(-n // batch))
    out = [images.to_uint8(generator.sample(k, batch), "round") for k in keys]
    return np.concatenate(out)[:n]


def _landmarks_of(face: np.ndarray, num: int) -> np.ndarray | None:
    """The largest face's landmarks in [0, 1] crop coordinates, or None if none is found."""
    side = face.shape[0]
    if side < _DETECT_SIDE:
        face = np.asarray(Image.fromarray(face).resize((_DETECT_SIDE,) * 2, Image.BICUBIC))
    found = detect.detect_faces(face, num, min_face_px=0, verify=False)  # all faces
    if not found:
        return None
    best = max(found, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return (best.landmarks + 0.5) / face.shape[0]


def _trimmed_mean(a: np.ndarray, cut: float = 0.1) -> np.ndarray:
    """Mean over axis 0 of ``a`` without its lowest and highest ``cut`` fraction (per value):
    robust to a few misplaced landmarks, and not snapped to whole pixels as a median is."""
    s = np.sort(a, axis=0)
    k = int(len(s) * cut)
    return s[k:len(s) - k].mean(axis=0)


def framing_summary(points68: np.ndarray) -> dict:
    """Eye distance, eye height and mouth height (crop fractions) from ``[N, 68, 2]``
    normalized landmarks (medians over N); the figures docs/align.md compares."""
    eye_l, eye_r, mouth = quads.ffhq_points(points68)
    return {"eye_distance": round(float(np.median(np.hypot(*(eye_r - eye_l).T))), 4),
            "eye_height": round(float(np.median((eye_l + eye_r)[:, 1] / 2)), 4),
            "mouth_height": round(float(np.median(mouth[:, 1])), 4)}


def estimate_template(faces: Iterable[np.ndarray], name: str, mirror: bool = False,
                      notes: dict | None = None) -> framing.Template:
    """A points template from square aligned faces.

    Args:
      faces: ``[R, R, 3]`` uint8 images, each framed as the generator expects.
      name: the template's name.
      mirror: also measure each face's mirror image, as another face framed the same way
        (the FFHQ recipe is mirror-symmetric): the template comes out left-right symmetric
        and a small set's noise halves.

    Returns:
      a :class:`~pulse_jax.align.framing.Template`: ``points5`` the 5-point positions and
      ``points68`` the 68-point anchors (10%-trimmed means); ``notes`` holds the counts and
      :func:`framing_summary`. ValueError if no face is found at all.
    """
    p5, p68, full68, count = [], [], [], 0
    for face in faces:
        count += 1
        for flip in (False, True) if mirror else (False,):
            img = np.ascontiguousarray(face[:, ::-1]) if flip else face
            a, b = _landmarks_of(img, 5), _landmarks_of(img, 68)
            if a is None or b is None:
                continue
            p5.append(a)
            p68.append(framing.anchors(b))
            full68.append(b)
    if not p5:
        raise ValueError(f"no face found in any of the {count} images")
    info = {"images": count, "measured": len(p5), "mirror": mirror,
            **(framing_summary(np.stack(full68)) if full68 else {}), **(notes or {})}
    return framing.Template(name=name, points5=_trimmed_mean(np.stack(p5)),
                            points68=_trimmed_mean(np.stack(p68)), notes=info)


def fit_ffhq5(faces: Iterable[np.ndarray], mirror: bool = True) -> tuple[np.ndarray, int]:
    """Fits :data:`~pulse_jax.align.framing.FFHQ_FROM_5` on faces (any framing; the fit
    works in each face's own eye frame).

    Each face (and, with ``mirror``, its mirror image) gets both dlib models' landmarks; the
    targets are the FFHQ recipe's eye centres (means of 68-point 36-41 and 42-47) and mouth
    centre (mean of 48 and 54), in the frame of :func:`~pulse_jax.align.framing.eye_frame`,
    and the least-squares coefficients map its features to them.

    Args:
      faces: ``[R, R, 3]`` uint8 images with one main face each.
      mirror: also use each face's mirror image (the fit comes out left-right symmetric).

    Returns:
      ``(coefficients [3, 6], faces used)``. ValueError if under 6 faces are measured.
    """
    xs, ys = [], []
    for face in faces:
        for flip in (False, True) if mirror else (False,):
            img = np.ascontiguousarray(face[:, ::-1]) if flip else face
            a, b = _landmarks_of(img, 5), _landmarks_of(img, 68)
            if a is None or b is None:
                continue
            o, d, features = framing.eye_frame(a)
            in_frame = (np.array(quads.ffhq_points(b)) @ np.array([1, 1j]) - o) / d
            xs.append(features)
            ys.append(np.concatenate([in_frame.real, in_frame.imag]))
    if len(xs) < 6:
        raise ValueError(f"only {len(xs)} faces measured; the fit needs at least 6")
    coef, *_ = np.linalg.lstsq(np.array(xs), np.array(ys), rcond=None)
    return coef, len(xs)


def write_template(checkpoint: str | os.PathLike, template: framing.Template) -> None:
    """Stores ``template`` in ``checkpoint``'s manifest (``align_template``); the arrays are
    not touched."""
    from pulse_jax.weights import checkpoint as ckpt
    ckpt.update_manifest(checkpoint, {framing.MANIFEST_KEY: template.to_dict()})


def measure_checkpoint(checkpoint: str | os.PathLike = "default", samples: int = 200,
                       seed: int = 0) -> tuple[pathlib.Path, framing.Template]:
    """The framing template of a checkpoint's generator, measured on ``samples`` faces it
    draws from ``seed`` (:func:`generator_samples`, :func:`estimate_template`).

    Returns:
      ``(the checkpoint's folder, the template)``, named after the folder. ``CheckpointError``
      (a ValueError) if ``checkpoint`` is not found (:func:`pulse_jax.weights.resolve_checkpoint`),
      ValueError if no face is found, ImportError without the align extra.
    """
    from pulse_jax import weights
    path = weights.resolve_checkpoint(checkpoint)
    gen = weights.load_generator(path)
    faces = generator_samples(gen, samples, seed)
    return path, estimate_template(faces, name=path.name, notes={
        "source": f"generator samples (seed {seed}, {samples} drawn)"})


if __name__ == "__main__":  # the command moved to the cli, with the other commands
    sys.exit("python -m pulse_jax.align.template is now `pulse-jax template` (same flags; "
             "`pulse-jax template --help` lists them)")
