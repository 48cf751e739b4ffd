"""Which detected faces a photo run replaces, and at what LR size.

PULSE is for faces that are small in their photo. The **size rule** (:func:`lr_size_for`)
gives each face the largest LR side the generator accepts (``resolution / S`` an integer,
:func:`pulse_jax.inputs.valid_lr_sizes`) that is not above the side its aligned crop covers
in the photo (``crop_px``): so a face is never downscaled more than it must be (no
information thrown away) and its LR is never an upscaled copy of the photo (nothing invented
before the search). A face whose crop already covers the generator's resolution has nothing
to gain and is skipped, unless the user asks (``replace_large_faces``: then it gets the LR
side of the reference's demo, :func:`default_lr_size`, as ``align_face.py`` made LR inputs
from HR photos).

:class:`FaceRules` holds the rule's settings and the choice of faces: every detection the
CNN check confirms (:mod:`pulse_jax.align.detect`), or the faces a user names
(``faces``: by index in the photo, as the manifest numbers them).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Union

from pulse_jax import inputs

__all__ = ["AUTO", "EVERY_FACE", "FaceRules", "SizeChoice", "default_lr_size", "lr_size_for", "parse_faces"]

#: ``FaceRules.lr_size`` for the size rule.
AUTO = "auto"


def default_lr_size(resolution: int) -> int:
    """The LR side for a generator: ``resolution / 32`` as the reference's 1024 -> 32, but
    at least 8 pixels (8 for the shipped 64x64 model)."""
    return max(8, resolution // 32)


@dataclasses.dataclass(frozen=True)
class FaceRules:
    """The choice of faces and their LR sizes in one photo run.

    Attributes:
      lr_size: :data:`AUTO` (the size rule), an LR side for every face (the ``pulse-jax
        align`` command's fixed size), or 0 (crops only, no LR).
      min_lr_size: the smallest LR side the size rule gives; a smaller face is refused.
      replace_large_faces: also replace faces whose crop covers the generator's resolution.
      verify: only faces the CNN check confirms are used (``faces`` overrides it).
      min_cnn_score: the CNN detector's confidence a confirmed face needs. dlib keeps its
        detections above 0, but face-like drawings come out low: on our committable faces
        and a public-domain portrait every face scored 1.02-1.09, a smiley badge 0.08 and
        drawn cartoon faces 0.2-0.83.
      faces: the face indices to use in every photo (``None``: every confirmed face); a
        named face is used even when the CNN check did not confirm it.
      min_face_px: faces whose crop covers fewer photo pixels are refused.
      min_inside: faces with less of their crop on the photo are refused.
    """

    lr_size: Union[int, str] = AUTO
    min_lr_size: int = 8
    replace_large_faces: bool = False
    verify: bool = True
    min_cnn_score: float = 0.5
    faces: Optional[frozenset[int]] = None
    min_face_px: float = 16.0
    min_inside: float = 0.5

    def __post_init__(self):
        if self.lr_size != AUTO and (not isinstance(self.lr_size, int) or self.lr_size < 0):
            raise ValueError(f"lr_size must be {AUTO!r} or a side in pixels, got "
                             f"{self.lr_size!r}")
        if self.min_lr_size < 1:
            raise ValueError(f"min_lr_size must be at least 1, got {self.min_lr_size}")


#: Every confirmed face of any size, crops only (no LR): :func:`pulse_jax.align.align_photo`'s
#: default, for aligning rather than upsampling.
EVERY_FACE = FaceRules(lr_size=0, replace_large_faces=True)


@dataclasses.dataclass(frozen=True)
class SizeChoice:
    """What the size rule says of one face: its LR side, or why it is not replaced
    (``refused``: a face too small to use, an input problem; ``skipped``: by choice)."""

    lr_size: int = 0
    refused: Optional[str] = None
    skipped: Optional[str] = None


def lr_size_for(crop_px: float, resolution: int, rules: FaceRules = FaceRules()) -> SizeChoice:
    """The LR side of a face whose aligned crop covers ``crop_px`` photo pixels (module doc)."""
    if rules.lr_size != AUTO:
        fixed = int(rules.lr_size)
        if fixed and crop_px < fixed:
            return SizeChoice(refused=f"too small for LR side {fixed}: its crop covers "
                                      f"{crop_px:.1f} px of the photo")
        return SizeChoice(lr_size=fixed)
    if crop_px >= resolution:
        if not rules.replace_large_faces:
            return SizeChoice(skipped=f"its crop covers {crop_px:.1f} px of the photo, at least "
                                      f"the generator's {resolution}: PULSE has nothing to add "
                                      "(--replace_large_faces replaces it)")
        return SizeChoice(lr_size=default_lr_size(resolution))
    fits = [s for s in inputs.valid_lr_sizes(resolution) if s <= crop_px]
    if not fits or fits[-1] < rules.min_lr_size:
        return SizeChoice(refused=f"too small: its crop covers {crop_px:.1f} px of the photo, "
                                  f"under the smallest LR side {rules.min_lr_size}")
    return SizeChoice(lr_size=fits[-1])


def parse_faces(text: str) -> Optional[frozenset[int]]:
    """``"0,2"`` -> ``frozenset({0, 2})``; ``""`` -> None (every confirmed face)."""
    text = text.strip()
    if not text:
        return None
    try:
        picked = frozenset(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ValueError(f"--faces must be face indices like 0,2, got {text!r}") from None
    if any(k < 0 for k in picked):
        raise ValueError(f"--faces indices must be 0 or more, got {text!r}")
    return picked
