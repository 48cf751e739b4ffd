"""Framing templates: where a generator expects a face's landmarks in its square images.

A generator only works on faces framed like its training data. Two kinds of template:

- ``"ffhq"``: NVIDIA's FFHQ framing (eye centres 0.25 of the crop apart at 0.477 of its
  height, mouth at 0.73, measured on ffhq10). With 68 landmarks the crop quad is the recipe's own
  (:func:`pulse_jax.align.quad.ffhq_quad`, bit-identical to the reference's
  ``align_face.py``); with 5 landmarks the recipe's three inputs (the eye centres and the
  mouth centre, which the 5-point model does not see) are estimated from the 5 points by a
  linear model (:func:`ffhq_points_from_5`, :data:`FFHQ_FROM_5`) and fed to the same
  formula, so each face keeps its own proportions instead of being fitted to a mean face.
- ``"points"``: any other generator's framing as landmark positions in crop coordinates
  (u right, v down, in [0, 1] across the crop; :mod:`pulse_jax.align.quad`), fitted by a
  similarity. Estimated from a generator's own samples by :mod:`pulse_jax.align.template`
  and stored in its checkpoint manifest under :data:`MANIFEST_KEY`.

Both use 5 anchor points in the order of dlib's 5-point model: one eye's outer corner, its
inner corner, the other eye's outer and inner corner, the base of the nose (the eye first
named is the one on the image's right). With 68 landmarks the anchors are points
:data:`ANCHORS_68` (45, 42, 36, 39, 33), the same places (checked on FFHQ faces: within
0.5% of the crop of the 5-point model's).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from pulse_jax.align import quad as quads

__all__ = ["ANCHORS_68", "FFHQ", "FFHQ_FROM_5", "FFHQ_POINTS5", "MANIFEST_KEY", "Template",
           "anchors", "eye_frame", "face_quad", "ffhq_points_from_5", "template_for",
           "template_from_manifest"]

#: The checkpoint manifest field that holds a generator's template (``Template.to_dict``).
MANIFEST_KEY = "align_template"

#: 68-point indices of the 5-point model's anchors, in its order.
ANCHORS_68 = (45, 42, 36, 39, 33)

#: Mean positions of dlib's 5 points in FFHQ-aligned crops, ``[5, 2]`` (u, v) in [0, 1].
#: Obtained with ``python benchmarks/align_eval.py --print_template``
#: (:func:`pulse_jax.align.template.estimate_template` with ``mirror=True``): the 5-point
#: predictor on the 10 FFHQ 1024 faces of ``shared/data/ffhq10`` and on their mirror images
#: (20 faces), pixel ``p`` at ``(p + 0.5) / 1024``, 10%-trimmed mean per coordinate.
FFHQ_POINTS5 = np.array([[0.6752, 0.4753], [0.5730, 0.4849],
                         [0.3246, 0.4756], [0.4271, 0.4850],
                         [0.5009, 0.6627]])
FFHQ_POINTS5.setflags(write=False)

#: The linear model from dlib's 5 points to the FFHQ recipe's eye centres and mouth centre,
#: ``[3, 6]``: features ``[1, nose_u, nose_v]`` (:func:`eye_frame`) times this gives the
#: real parts of (left eye, right eye, mouth) and then their imaginary parts, in the eye
#: frame. Fitted by ``python benchmarks/align_eval.py --fit_ffhq5=GLOB``
#: (:func:`pulse_jax.align.template.fit_ffhq5`): least squares, the 68-point model's points
#: as targets, on 74 faces (37 aligned face crops from the example inputs of the GFPGAN and
#: CodeFormer repositories, and their mirror images); ffhq10 is kept out of the fit to
#: measure it. The 68-point model is not used at run time.
FFHQ_FROM_5 = np.array([[-0.47538, 0.4697, 0.0051, -0.02758, -0.02273, 0.31249],
                        [0.03578, 0.04317, 0.08346, 0.00216, -0.00629, -0.01792],
                        [-0.03381, 0.03861, -0.0074, 0.02774, 0.01765, 0.93341]])
FFHQ_FROM_5.setflags(write=False)


@dataclasses.dataclass(frozen=True)
class Template:
    """A generator's framing.

    Attributes:
      name: ``"ffhq"`` (NVIDIA's recipe with 68 landmarks) or a free name for a points
        template (e.g. ``"utkface64"``).
      points5: ``[5, 2]`` anchor positions in [0, 1] crop coordinates, as dlib's 5-point
        model places them.
      points68: ``[5, 2]`` the same anchors as the 68-point model places them (used with 68
        landmarks); ``None``: ``points5`` serves both.
      recipe: ``"ffhq"`` (NVIDIA's quad: from 68 landmarks, or from the eyes and mouth
        estimated from 5) or ``"points"`` (always a similarity fit to the anchors).
      notes: how it was obtained (free JSON-able fields: samples, faces found, source ...).
    """

    name: str
    points5: np.ndarray
    points68: np.ndarray | None = None
    recipe: str = "points"
    notes: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.recipe not in ("ffhq", "points"):
            raise ValueError(f"recipe must be 'ffhq' or 'points', got {self.recipe!r}")
        for field in ("points5", "points68"):
            v = getattr(self, field)
            if v is None:
                continue
            a = np.array(v, np.float64)
            if a.shape != (5, 2) or not np.all(np.isfinite(a)):
                raise ValueError(f"template {field} must be [5, 2] finite, got {a.shape}")
            a.setflags(write=False)
            object.__setattr__(self, field, a)

    def to_dict(self) -> dict:
        """JSON-able fields (what a checkpoint manifest stores)."""
        out = {"name": self.name, "recipe": self.recipe,
               "points5": np.round(self.points5, 5).tolist()}
        if self.points68 is not None:
            out["points68"] = np.round(self.points68, 5).tolist()
        return {**out, "notes": dict(self.notes)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Template":
        try:
            return cls(name=str(d["name"]), points5=d["points5"], points68=d.get("points68"),
                       recipe=d.get("recipe", "points"), notes=dict(d.get("notes", {})))
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a framing template: {e!r} in {dict(d)!r}") from None


#: NVIDIA's FFHQ framing.
FFHQ = Template(name="ffhq", points5=FFHQ_POINTS5, recipe="ffhq",
                notes={"source": "FFHQ-aligned faces (shared/data/ffhq10), dlib 5-point"})


def template_from_manifest(manifest: Mapping[str, Any]) -> Template | None:
    """The template a checkpoint manifest stores under :data:`MANIFEST_KEY`, or None."""
    d = manifest.get(MANIFEST_KEY)
    return None if d is None else Template.from_dict(d)


def template_for(manifest: Mapping[str, Any] | None, choice: str = "auto",
                 where: str = "") -> Template:
    """The framing to align for a checkpoint whose manifest is ``manifest`` (None: no
    checkpoint): ``choice`` "auto" (its stored template if it has one, else FFHQ's), "ffhq",
    or "checkpoint" (its stored template; ValueError naming ``where`` if there is none)."""
    stored = None if manifest is None else template_from_manifest(manifest)
    if choice == "checkpoint" and stored is None:
        raise ValueError(f"checkpoint {where or '(none)'} stores no framing template; make one "
                         "with pulse-jax template --checkpoint=DIR --write, "
                         "or use --template=ffhq")
    return FFHQ if choice == "ffhq" or stored is None else stored


def anchors(landmarks: np.ndarray) -> np.ndarray:
    """``[5, 2]`` anchors from 5 or 68 landmarks (``[K, 2]``, any coordinates)."""
    lm = np.asarray(landmarks, np.float64)
    if lm.shape == (5, 2):
        return lm
    if lm.shape == (68, 2):
        return lm[list(ANCHORS_68)]
    raise ValueError(f"expected [5, 2] or [68, 2] landmarks, got {lm.shape}")


def eye_frame(landmarks5: np.ndarray) -> tuple[complex, complex, np.ndarray]:
    """The frame :data:`FFHQ_FROM_5` works in, from dlib's 5 points (``[5, 2]`` photo pixels).

    Points are complex numbers ``x + i y``. The origin ``o`` is the midpoint of the two eyes'
    corner midpoints, the unit ``d`` the vector from the image-left eye's corner midpoint to
    the image-right one's, so a point ``p`` has frame coordinates ``(p - o) / d``: the same
    for a face however it is turned, scaled or shifted.

    Returns:
      ``(o, d, features)``; features ``[3]`` = ``[1, nose_u, nose_v]``, the base of the nose
      in the frame.
    """
    z = np.asarray(landmarks5, np.float64) @ np.array([1, 1j])
    right, left = (z[0] + z[1]) / 2, (z[2] + z[3]) / 2
    o, d = (left + right) / 2, right - left
    if d == 0:
        raise ValueError("the two eyes' landmarks coincide")
    nose = (z[4] - o) / d
    return complex(o), complex(d), np.array([1.0, nose.real, nose.imag])


def ffhq_points_from_5(landmarks5: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Estimates of the FFHQ recipe's left eye centre, right eye centre and mouth centre
    (each ``[2]`` photo pixels) from dlib's 5 points ``[5, 2]``, by :data:`FFHQ_FROM_5`."""
    o, d, features = eye_frame(landmarks5)
    y = features @ FFHQ_FROM_5
    pts = o + d * (y[:3] + 1j * y[3:])
    return tuple(np.array([p.real, p.imag]) for p in pts)


def face_quad(landmarks: np.ndarray, template: Template = FFHQ) -> tuple[np.ndarray, float]:
    """The crop quad (TL, BL, BR, TR photo pixels ``[4, 2]``) and its side for one face.

    Args:
      landmarks: ``[5, 2]`` or ``[68, 2]`` photo pixels.
      template: the target framing.

    Returns:
      ``(quad, qsize)``; with 68 landmarks and the ffhq recipe exactly the reference's.
    """
    lm = np.asarray(landmarks, np.float64)
    if template.recipe == "ffhq" and lm.shape == (68, 2):
        return quads.ffhq_quad(lm)
    if template.recipe == "ffhq" and lm.shape == (5, 2):
        return quads.ffhq_quad_from_points(*ffhq_points_from_5(lm))
    target = template.points68 if lm.shape == (68, 2) and template.points68 is not None \
        else template.points5
    quad = quads.quad_from_similarity(anchors(lm), target)
    return quad, quads.quad_size(quad)
