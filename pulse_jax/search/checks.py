"""Every check the search makes of what it is asked before compiling anything: the generator,
the input faces (or observations) against the degradation, face ids, and how faces split
into compiled calls over devices. Each raises ValueError naming the problem (the size
checks' :class:`~pulse_jax.inputs.ImageError` is one)."""

from __future__ import annotations

from typing import Any, Optional, Sequence

import jax
import numpy as np

from pulse_jax import degrade
from pulse_jax.generator import Generator
from pulse_jax.inputs import check_size

__all__ = ["OVERSHOOT", "check_face_ids", "check_generator", "check_lr_images",
           "check_observations", "check_spread", "faces_per_call", "resolve_degradation",
           "search_operator"]

# A bicubic downscale of an image in [0, 1] stays within [-0.21, 1.21] (the filter's negative
# lobes); values that far outside [0, 1] are an overshoot to clip, beyond it a wrong range.
OVERSHOOT = 0.25


def check_generator(generator: Generator) -> None:
    """ValueError unless ``generator`` can be searched (it needs a Gaussian fit)."""
    if generator.gaussian_fit is None:
        raise ValueError("the generator has no Gaussian fit; convert it again with "
                         "gaussian_fit.pt or with mapping weights (pulse-jax convert), or "
                         "compute one with pulse_jax.weights.compute_gaussian_fit")


def check_lr_images(generator: Generator, lr_images: np.ndarray) -> int:
    """The downscale factor for ``lr_images`` ``[N, S, S, C]`` in [0, 1] (or within
    :data:`OVERSHOOT` of it, as a bicubic downscale may give); ValueError naming the problem
    if they cannot be searched with ``generator``."""
    channels = generator.config.num_channels
    if lr_images.ndim != 4 or lr_images.shape[-1] != channels:
        raise ValueError(f"lr_images must be [N, S, S, {channels}], got shape {lr_images.shape}")
    n, h, w, _ = lr_images.shape
    if n == 0:
        raise ValueError("lr_images holds no faces")
    if h != w:
        raise ValueError(f"lr_images must be square, got {h}x{w}")
    factor = check_size(h, generator.config.resolution)
    _check_values(lr_images)
    return factor


def _check_values(lr_images: np.ndarray) -> None:
    if not np.all(np.isfinite(lr_images)):
        raise ValueError("lr_images contains NaN or infinite values")
    lo, hi = float(lr_images.min()), float(lr_images.max())
    if lo < -OVERSHOOT or hi > 1 + OVERSHOOT:
        hint = ("divide uint8 images by 255" if lo >= -OVERSHOOT else
                "map [-1, 1] images to [0, 1] with (x + 1) / 2" if hi <= 1 + OVERSHOOT else
                "scale them to [0, 1]")
        raise ValueError(f"lr_images must be in [0, 1] (found values in [{lo:.3g}, {hi:.3g}]); "
                         f"{hint}")


def resolve_degradation(degradation: Any, n: int) -> tuple[Optional[degrade.Operator], bool]:
    """``(operator, per_face)`` for :func:`~pulse_jax.search.upsample`'s ``degradation``:
    None (the reference's bicubic downscale, factor from the input size) gives
    ``(None, False)``; an operator or a string (:func:`pulse_jax.degrade.parse`) one
    operator for every face; a sequence of ``n`` of them per-face operators, stacked
    (:func:`pulse_jax.degrade.stack`). ValueError for a bad string, a wrong count, or a
    mask() without its mask."""
    if degradation is None:
        return None, False
    one = lambda d: degrade.parse(d) if isinstance(d, str) else d
    if isinstance(degradation, (str, degrade.Operator)):
        op, per_face = one(degradation), False
    elif isinstance(degradation, (list, tuple)):
        if len(degradation) != n:
            raise ValueError(f"{len(degradation)} per-face degradations for {n} faces")
        op, per_face = degrade.stack([one(d) for d in degradation]), True
    else:
        raise ValueError(f"degradation must be an operator, a string or a sequence of them, "
                         f"got {type(degradation).__name__}")
    if not isinstance(op, degrade.Operator):
        raise ValueError(f"not a degradation operator: {op!r}")
    if degrade.has_placeholder(op):
        raise ValueError("the degradation has mask() without a mask: build it with "
                         "degrade.mask(array) or mask(file=...)")
    return op, per_face


def check_observations(generator: Generator, observed: np.ndarray,
                       op: degrade.Operator) -> None:
    """ValueError naming the problem unless ``observed`` ``[N, h, w, c]`` (values in [0, 1],
    or within :data:`OVERSHOOT` of it) is what ``op`` makes of the generator's images."""
    r, c = generator.config.resolution, generator.config.num_channels
    if observed.ndim != 4:
        raise ValueError(f"observed images must be [N, h, w, c], got shape {observed.shape}")
    if observed.shape[0] == 0:
        raise ValueError("lr_images holds no faces")
    want = op.out_shape((observed.shape[0], r, r, c))
    if tuple(observed.shape) != tuple(want):
        raise ValueError(f"degradation {op.describe()!r} turns the {r}x{r} generator's images "
                         f"into observations of shape [N, {want[1]}, {want[2]}, {want[3]}], "
                         f"got shape {observed.shape}")
    _check_values(observed)


def search_operator(generator: Generator, lr_images: np.ndarray,
                    degradation: Any) -> tuple[degrade.Operator, bool, int]:
    """``(operator, per_face, factor)`` that the search runs for ``degradation``, the
    input checked against it: None is the default operator, the reference's bicubic
    downscale with the factor of the input's size (:func:`check_lr_images`); anything else
    :func:`resolve_degradation`'s operator (:func:`check_observations`), ``factor`` then
    ``resolution // S`` (at least 1; only the default operator reads it)."""
    op, per_face = resolve_degradation(degradation, len(lr_images) if lr_images.ndim else 0)
    if op is None:
        factor = check_lr_images(generator, lr_images)
        return degrade.downscale(factor, "bicubic"), False, factor
    check_observations(generator, lr_images, op)
    return op, per_face, max(1, generator.config.resolution // lr_images.shape[1])


def check_face_ids(face_ids: Optional[Sequence[int]], n: int) -> list[int]:
    """The ``n`` faces' ids as ints (default ``0..n-1``); ValueError for a wrong count."""
    ids = list(range(n)) if face_ids is None else [int(f) for f in face_ids]
    if len(ids) != n:
        raise ValueError(f"face_ids has {len(ids)} entries for {n} faces")
    return ids


def faces_per_call(n: int, batch_size: Optional[int] = None,
                   mesh: Optional[jax.sharding.Mesh] = None,
                   spread_restarts: bool = False) -> int:
    """How many faces each compiled call of :func:`~pulse_jax.search.upsample_chunks` takes
    for ``n`` faces: ``batch_size`` per device (all ``n`` over the devices when None), or
    with ``spread_restarts`` ``batch_size`` per call. ValueError for a bad ``batch_size`` or
    ``mesh``."""
    ndev = 1 if mesh is None else mesh.devices.size
    if mesh is not None and mesh.axis_names != ("faces",):
        raise ValueError(f"mesh must have the single axis 'faces', got {mesh.axis_names}")
    spread = bool(spread_restarts) and ndev > 1
    per_call = (n if spread else -(-n // ndev)) if batch_size is None else int(batch_size)
    if per_call < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    return per_call if spread else per_call * ndev


def check_spread(faces: int, restarts: int, ndev: int) -> None:
    """With ``spread_restarts``: ValueError unless a call's ``faces x restarts`` rows divide
    over the ``ndev`` devices."""
    if (faces * restarts) % ndev:
        raise ValueError(f"spread_restarts: {faces} faces x {restarts} restarts do not "
                         f"divide over {ndev} devices; change restarts or batch_size")
