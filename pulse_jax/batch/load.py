"""Step 4 of a batch: every face to do is read, validated and given its forward model
(:mod:`pulse_jax.batch`, "Load").

Every loaded face carries its operator, always an explicit one: without a ``degradation``
it is the reference's bicubic downscale by the face's factor (:func:`default_operator`),
which the search runs bit for bit as it runs "no operator". Whether an observation fits its
operator is the search's rule (:func:`pulse_jax.search.check_observations`), asked here
per face so that a bad one is that face's bad input, not its whole group's failure.
"""

from __future__ import annotations

import pathlib
from typing import NamedTuple

import numpy as np

from pulse_jax import degrade, images
from pulse_jax import search as search_lib
from pulse_jax.batch.faces import Face
from pulse_jax.batch.ledger import Ledger
from pulse_jax.batch.plan import Plan

__all__ = ["Loaded", "default_operator", "load_faces", "mask_path"]


class Loaded(NamedTuple):
    """One face ready for the search."""

    face: Face
    lr: np.ndarray            # [S, S, c] float32 in [0, 1], the observation
    notes: list[str]          # what loading converted (images.load_image, gray)
    op: degrade.Operator      # its forward model


def default_operator(factor: int) -> degrade.Operator:
    """What no ``degradation`` means for inputs ``factor`` times smaller than the generator's
    images: ``downscale(factor=F,kernel=bicubic)``, the reference's operator."""
    return degrade.downscale(factor, "bicubic")


def mask_path(input_path: pathlib.Path) -> pathlib.Path:
    """Where the runner looks for a face's mask: ``{stem}_mask.png`` beside its input."""
    return input_path.with_name(f"{input_path.stem}_mask.png")


def load_faces(ledger: Ledger, todo: list[Face]) -> dict[tuple, list[Loaded]]:
    """The good faces of ``todo`` grouped by observation shape, in order; each bad input is
    recorded at once (``error_kind`` "input") and the others go on."""
    groups: dict[tuple, list[Loaded]] = {}
    for f in todo:
        try:
            face = _load(ledger.plan, f)
        except images.ImageError as e:
            ledger.bad(f, str(e), "input")
            ledger.bar.faces_done(1)
            continue
        groups.setdefault(face.lr.shape, []).append(face)
    return groups


def _load(plan: Plan, f: Face) -> Loaded:
    resolution = plan.generator.resolution
    given = plan.options.operator
    if given is None:  # the LR size gives the factor; load_image names a size that cannot
        x, notes = images.load_image(f.input, resolution=resolution)
        return Loaded(f, x, list(notes), default_operator(resolution // x.shape[0]))
    x, notes = images.load_image(f.input)
    op = _with_mask(given, f) if plan.per_face else given
    x = _observation(plan, f, x, notes, op)
    return Loaded(f, x, list(notes), op)


def _with_mask(op: degrade.Operator, f: Face) -> degrade.Operator:
    """``op`` with its ``mask()`` filled from ``{stem}_mask.png`` beside ``f``'s input."""
    ops = list(degrade.flatten(op))
    for i, o in enumerate(ops):
        if isinstance(o, degrade.Mask) and o.placeholder:
            mp = mask_path(f.input)
            if not mp.is_file():
                raise images.ImageError(f.input, f"the degradation has mask() but its mask "
                                                 f"{mp.name} is missing beside it")
            try:
                ops[i] = o.filled(degrade.read_mask(str(mp)).mask)  # still "mask()": one
                # structure for every face, so their operators stack
            except ValueError as e:
                raise images.ImageError(f.input, str(e)) from None
    return degrade.compose(*ops)


def _observation(plan: Plan, f: Face, x: np.ndarray, notes: list[str],
                 op: degrade.Operator) -> np.ndarray:
    """``x`` with the channels ``op`` observes (a gray image's one), or ImageError naming
    what does not fit."""
    r, c = plan.generator.resolution, plan.generator.config.num_channels
    try:
        want = op.out_shape((1, r, r, c))[1:]
    except ValueError as e:  # e.g. a mask of another size than the generator's images
        raise images.ImageError(f.input, str(e)) from None
    if want[-1] == 1 and x.shape[-1] == 3:
        if np.ptp(x, axis=-1).max() > 1.5 / 255:
            raise images.ImageError(f.input, f"the degradation {op.describe()!r} observes one "
                                             "gray channel but this image has color")
        x = x[..., :1]
        notes.append("gray observation: one channel kept")
    try:
        search_lib.check_observations(plan.generator, x[None], op)
    except ValueError:  # a decoded image is finite and in [0, 1]: only its shape is refused
        raise images.ImageError(
            f.input, f"image is {x.shape[1]}x{x.shape[0]}x{x.shape[2]} (width x height x "
                     f"channels) but {op.describe()!r} observes the {r}x{r} generator's images "
                     f"as {want[1]}x{want[0]}x{want[2]}") from None
    return x
