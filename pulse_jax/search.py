"""The PULSE search: find latents whose generated image downscales to each input face.

For every face, ``restarts`` independent random starts run in parallel (one batch of
``faces x restarts`` through the generator); the step is in :mod:`pulse_jax.search_steps`.
Every restart keeps its best iterate (lowest total loss, as the reference's ``best_im``);
each face's result is its best restart (see :class:`SearchConfig` ``select``). Unlike the
reference (docs/reference.md, "Pitfalls") the returned image is the best iterate's, success
is decided per face, and a result is always returned with its l2 and success flag;
``return_image="last"`` reproduces the reference's last-iterate image.

How steps run (``SearchConfig.loop``, ``upconv``; docs/performance.md): the generator's
weight arithmetic is done once per call; on CPU a Python loop calls one compiled step that
donates its state, and the upsampling convolutions run in their sub-pixel form; GPU/TPU
use a ``fori_loop`` per progress chunk. Same function either way, up to float rounding.

Faces are searched in chunks of ``batch_size`` (per device), the last one padded:
:func:`upsample_chunks` yields each chunk's :class:`Result` as soon as it is done (the
batch runner writes faces from it), :func:`upsample` returns them all at once.

What is matched: by default the reference's bicubic downscale of the generated face
against the LR input; ``degradation=`` takes any forward model of :mod:`pulse_jax.degrade`
(blur, other downscales, gray, masks, a noise model; one per face if need be), and then the
input is its observation and ``l2``/``success`` are measured there (docs/degradations.md).

Randomness: restart ``r`` of the face with index ``i`` in the request (or ``face_ids[i]``)
draws from ``fold_in(fold_in(PRNGKey(seed), face_id), r)``, so duplicates differ and a
face's start does not depend on the other faces. Bitwise equality of whole runs also
needs the same batch shape (the search is chaotic and a different batch size changes
float32 reduction order); ``batch_size`` pads every chunk of faces to a fixed shape.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax import degrade, search_steps
from pulse_jax.generator import Generator
from pulse_jax.search_config import (LOOPS, NOISE_TYPES, RETURN_IMAGES, SELECT_RULES, UPCONVS,
                                     NoisePlan, SearchConfig, parse_bad_noise_layers)
from pulse_jax.search_steps import gaussianize, loss_and_grad, restart_keys

__all__ = [
    "LOOPS", "NOISE_TYPES", "NoisePlan", "OVERSHOOT", "Progress", "RETURN_IMAGES", "Result",
    "SELECT_RULES", "SearchConfig", "UPCONVS", "check_generator", "check_lr_images",
    "check_observations", "faces_per_call", "gaussianize", "loss_and_grad",
    "parse_bad_noise_layers", "resolve_degradation", "restart_keys", "upsample",
    "upsample_chunks",
]


@flax.struct.dataclass
class Result:
    """What :func:`upsample` returns for N faces (arrays, numpy on the host).

    Attributes:
      hr: ``[N, R, R, 3]`` in [0, 1], the chosen image per face.
      lr: ``[N, S, S, 3]`` (the observation's shape), the degradation of ``hr`` (``A(hr)``,
        not clipped; with ``return_image="last"`` the reference's clamp(A(best image))
        instead). ``A`` is the bicubic downscale unless a ``degradation`` was given.
      l2: ``[N]``, mean squared error of ``lr`` against the input (unclamped), over the
        observed pixels when the degradation has a mask.
      success: ``[N]`` bool, ``l2 <= eps`` (``eps + sigma^2`` with a ``noise(sigma)``
        degradation, docs/degradations.md).
      restart: ``[N]`` int, the chosen restart.
      restart_l2, restart_total: ``[N, restarts]``: each restart's l2 (from its best
        iterate's clipped image) and best total loss during the search.
      restart_best_step: ``[N, restarts]``: the step of each restart's best iterate.
      latent: ``[N, rows, D]`` the chosen restart's raw Gaussian latent z.
      wplus: ``[N, L, D]`` the W+ latent fed to the synthesis network.
      noises: one array ``[N, r, r, 1]`` per ``generator.noise_shapes`` entry, the noise
        maps of the chosen iterate.
      restart_hr: ``[N, restarts, R, R, 3]`` if ``keep_restart_images``, else None.
      seed, face_ids: what the random starts were derived from.
    """

    hr: Any
    lr: Any
    l2: Any
    success: Any
    restart: Any
    restart_l2: Any
    restart_total: Any
    restart_best_step: Any
    latent: Any
    wplus: Any
    noises: Any
    restart_hr: Any = None
    seed: int = flax.struct.field(pytree_node=False, default=0)
    face_ids: Any = None



class Progress(NamedTuple):
    """What the progress callback receives after every chunk of steps."""

    step: int                 # steps done
    steps: int                # steps in total
    faces: tuple[int, int]    # (first, end) face indices of the chunk of faces in flight
    best_l2: np.ndarray       # [faces_in_chunk, restarts] best (clamped) L2 so far
    best_total: np.ndarray    # [faces_in_chunk, restarts]
    render: Callable[[], np.ndarray]  # -> [faces_in_chunk, R, R, 3] best-so-far image


def check_generator(generator: Generator) -> None:
    """ValueError unless ``generator`` can be searched (it needs a Gaussian fit)."""
    if generator.gaussian_fit is None:
        raise ValueError("the generator has no Gaussian fit; convert it again with "
                         "gaussian_fit.pt or with mapping weights (pulse-jax convert), or "
                         "compute one with pulse_jax.weights.compute_gaussian_fit")


# A bicubic downscale of an image in [0, 1] stays within [-0.21, 1.21] (the filter's negative
# lobes); values that far outside [0, 1] are an overshoot to clip, beyond it a wrong range.
OVERSHOOT = 0.25


def check_lr_images(generator: Generator, lr_images: np.ndarray) -> int:
    """The downscale factor for ``lr_images`` ``[N, S, S, C]`` in [0, 1] (or within
    :data:`OVERSHOOT` of it, as a bicubic downscale may give); ValueError naming the problem
    if they cannot be searched with ``generator``."""
    from pulse_jax.images import check_size
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
    """``(operator, per_face)`` for :func:`upsample`'s ``degradation``: None (the reference's
    bicubic downscale, factor from the input size) gives ``(None, False)``; an operator or a
    string (:func:`pulse_jax.degrade.parse`) one operator for every face; a sequence of
    ``n`` of them per-face operators, stacked (:func:`pulse_jax.degrade.stack`).
    ValueError for a bad string, a wrong count, or a mask() without its mask."""
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


def faces_per_call(n: int, batch_size: Optional[int] = None,
                   mesh: Optional[jax.sharding.Mesh] = None,
                   spread_restarts: bool = False) -> int:
    """How many faces each compiled call of :func:`upsample_chunks` takes for ``n`` faces:
    ``batch_size`` per device (all ``n`` over the devices when None), or with
    ``spread_restarts`` ``batch_size`` per call. ValueError for a bad ``batch_size`` or
    ``mesh``."""
    ndev = 1 if mesh is None else mesh.devices.size
    if mesh is not None and mesh.axis_names != ("faces",):
        raise ValueError(f"mesh must have the single axis 'faces', got {mesh.axis_names}")
    spread = bool(spread_restarts) and ndev > 1
    per_call = (n if spread else -(-n // ndev)) if batch_size is None else int(batch_size)
    if per_call < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    return per_call if spread else per_call * ndev


def upsample(generator: Generator, lr_images: Any, config: SearchConfig = SearchConfig(),
             seed: int = 0, *, face_ids: Optional[Sequence[int]] = None,
             batch_size: Optional[int] = None,
             mesh: Optional[jax.sharding.Mesh] = None,
             spread_restarts: bool = False,
             progress: Optional[Callable[[Progress], None]] = None,
             degradation: Any = None) -> Result:
    """Upsample faces with PULSE.

    Args:
      generator: a :class:`Generator` with a Gaussian fit.
      lr_images: ``[N, S, S, 3]`` in [0, 1], with ``S * factor = generator.resolution``;
        with a ``degradation``, the observations ``[N, h, w, c]`` that it makes of the
        generator's ``[N, R, R, 3]`` images (``op.out_shape``).
      config: the :class:`SearchConfig`.
      seed: base of every restart's PRNG key (seed 0 is a seed like any other).
      face_ids: per-face ids for the keys (default ``0..N-1``); give a face the same id to
        get the same starts wherever it appears.
      batch_size: faces per compiled call. Faces are processed in chunks of this size and
        the last chunk is padded, so a face's result is bitwise independent of how many
        faces were requested. Default: all N faces in one call. With a ``mesh`` this is
        the number of faces per device.
      mesh: optional device mesh with an axis named "faces"; each call then takes
        ``batch_size * mesh.size`` faces, split over the devices (the generator is
        replicated). Results equal a single device's with the same ``batch_size``.
      spread_restarts: with a ``mesh``, split the ``faces x restarts`` rows of a call over
        the devices instead of whole faces, so that few faces with many restarts use every
        device (e.g. one face, 8 restarts, 8 TPU cores). ``batch_size`` is then the number
        of faces per call (default: all), and ``batch_size * restarts`` must divide by the
        number of devices. A face's starts are the same as without it; its bits may differ
        (the per-device batch shape is another one).
      progress: called with a :class:`Progress` after every ``config.chunk_steps`` steps.
      degradation: the forward model ``A`` (docs/degradations.md): None for the reference's
        bicubic downscale (its factor from the input size); a
        :class:`pulse_jax.degrade.Operator` or its string (:func:`pulse_jax.degrade.parse`)
        for every face; or a sequence of N of them, one per face, of one structure. The
        search matches ``A(G(w))`` to the input; ``l2`` and ``success`` are measured there.
        ``"downscale(factor=f,kernel=bicubic)"`` is the default, bit for bit.

    Returns:
      A :class:`Result` of numpy arrays.

    Raises:
      ValueError: naming the problem: a bad degradation, an input of the wrong shape for
        it, values outside [0, 1], a generator without a Gaussian fit.
    """
    parts = [res for _, res in upsample_chunks(generator, lr_images, config, seed,
                                               face_ids=face_ids, batch_size=batch_size,
                                               mesh=mesh, spread_restarts=spread_restarts,
                                               progress=progress, degradation=degradation)]
    arrays = [{f.name: getattr(p, f.name) for f in dataclasses.fields(Result)
               if f.name not in ("seed", "face_ids")} for p in parts]
    merged = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *arrays)
    return Result(**merged, seed=seed, face_ids=np.concatenate([p.face_ids for p in parts]))


def upsample_chunks(generator: Generator, lr_images: Any, config: SearchConfig = SearchConfig(),
                    seed: int = 0, *, face_ids: Optional[Sequence[int]] = None,
                    batch_size: Optional[int] = None,
                    mesh: Optional[jax.sharding.Mesh] = None,
                    spread_restarts: bool = False,
                    progress: Optional[Callable[[Progress], None]] = None,
                    degradation: Any = None,
                    ) -> Iterator[tuple[tuple[int, int], Result]]:
    """:func:`upsample`, one chunk of faces at a time: yields ``((start, stop), result)``
    for faces ``start:stop`` as soon as their search is done (same arguments; the
    generator's weights are prepared once for every chunk)."""
    check_generator(generator)
    lr_images = np.asarray(lr_images, np.float32)
    op, per_face = resolve_degradation(degradation, len(lr_images) if lr_images.ndim else 0)
    if op is not None:
        check_observations(generator, lr_images, op)
    if op is None or (not per_face and isinstance(op, degrade.Downscale)
                      and op.kernel == "bicubic" and op.factor >= 2):
        # The reference's operator: its own code path (a plain array reference), same bits.
        factor, op = check_lr_images(generator, lr_images), None
    else:
        factor = max(1, generator.config.resolution // lr_images.shape[1])  # unused by A
        op = op if per_face else degrade.per_row(op, lr_images.shape[0])
    lo, hi = float(lr_images.min()), float(lr_images.max())
    if lo < 0 or hi > 1:
        warnings.warn(f"lr_images had values in [{lo:.3g}, {hi:.3g}]; clipped to [0, 1] (a "
                      "bicubic downscale of an image in [0, 1] overshoots it slightly)",
                      stacklevel=3)
        lr_images = np.clip(lr_images, 0.0, 1.0)
    n = lr_images.shape[0]
    face_ids = list(range(n)) if face_ids is None else [int(f) for f in face_ids]
    if len(face_ids) != n:
        raise ValueError(f"face_ids has {len(face_ids)} entries for {n} faces")
    bs = faces_per_call(n, batch_size, mesh, spread_restarts)
    ndev = 1 if mesh is None else mesh.devices.size
    spread = bool(spread_restarts) and ndev > 1
    if spread and (bs * config.restarts) % ndev:
        raise ValueError(f"spread_restarts: {bs} faces x {config.restarts} restarts do not "
                         f"divide over {ndev} devices; change restarts or batch_size")
    platform = None if mesh is None else mesh.devices.flat[0].platform
    spec = search_steps.Spec.make(generator.config, config, factor, platform)
    stages = search_steps.stages(spec, mesh, bs * spec.cfg.restarts, spread)
    weights = stages.prepare(generator)
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        idx = list(range(start, stop)) + [stop - 1] * (bs - (stop - start))  # pad with copies
        ids = [face_ids[i] for i in idx]
        out = _search_chunk(spec, stages, weights, lr_images[idx], ids, seed, (start, stop),
                            progress, mesh, None if op is None else degrade.take_rows(op, idx))
        out = jax.tree_util.tree_map(lambda x: np.asarray(x)[: stop - start], out)
        yield (start, stop), Result(**out, seed=seed, face_ids=np.asarray(ids[: stop - start]))


def _search_chunk(spec: search_steps.Spec, stages: search_steps.Stages, weights: dict,
                  lr: np.ndarray, ids: list[int], seed: int, faces: tuple[int, int], progress,
                  mesh, op: Optional[degrade.Operator] = None) -> dict:
    restarts, steps = spec.cfg.restarts, spec.cfg.steps
    nf, real = len(ids), faces[1] - faces[0]
    draw, init, run, finalize = stages.draw, stages.init, stages.run, stages.finalize
    ref = np.repeat(lr, restarts, axis=0)
    if op is not None:  # each row carries its face's operator (leaves [B, ...])
        ref = degrade.Observation(ref, degrade.take_rows(op, np.repeat(np.arange(nf), restarts)))
    # Placed once, as the steps take it, so the host loop does not move it at every step.
    ref = jax.device_put(ref, None if mesh is None else jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("faces")))
    state = init(*draw(restart_keys(seed, ids, restarts)))
    done = 0
    while done < steps:
        k = min(spec.cfg.chunk_steps, steps - done)
        state = run(weights, ref, state, jnp.int32(k))
        done += k
        if progress is not None:
            cur = state

            def render(cur=cur):
                return np.asarray(finalize(weights, ref, cur)["hr"])[:real]

            progress(Progress(done, steps, faces,
                              np.asarray(cur.best_l2).reshape(nf, restarts)[:real],
                              np.asarray(cur.best_total).reshape(nf, restarts)[:real], render))
    return finalize(weights, ref, state)
