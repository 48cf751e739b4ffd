"""The search's entry points: :func:`upsample` (every face, one :class:`Result`) and
:func:`upsample_chunks` (one chunk of ``batch_size`` faces at a time, the last one padded),
over the compiled stages of :mod:`pulse_jax.search.stages`. The input is checked
(:mod:`pulse_jax.search.checks`) and the degradation resolved to one operator here, once:
no degradation is the reference's bicubic downscale, and every chunk's reference is an
:class:`~pulse_jax.degrade.Observation` carrying its operator."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax import degrade, host_memory
from pulse_jax.generator import Generator
from pulse_jax.search import checks, stages as stages_lib, variability
from pulse_jax.search.config import SearchConfig
from pulse_jax.search.steps import Spec, restart_keys

__all__ = ["Progress", "Result", "upsample", "upsample_chunks"]


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
      variability: ``[N, R, R]`` in [0, 0.5], the spread of the restarts' images
        (:func:`pulse_jax.search.variability.spread`: luminance deviation over the restarts
        within eps, or all if fewer than two are) with ``keep_restart_images`` and at least
        2 restarts, else None (one restart has no spread); ``variability_score`` is its
        mean per face.
      variability_restarts: ``[N]`` how many restarts each map is over (None with it).
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
    variability: Any = None
    variability_restarts: Any = None
    seed: int = flax.struct.field(pytree_node=False, default=0)
    face_ids: Any = None


    @property
    def variability_score(self) -> Optional[np.ndarray]:
        """``[N]`` each face's mean variability, or None when there is no map."""
        return None if self.variability is None else variability.score(self.variability)


class Progress(NamedTuple):
    """What the progress callback receives after every chunk of steps."""

    step: int                 # steps done
    steps: int                # steps in total
    faces: tuple[int, int]    # (first, end) face indices of the chunk of faces in flight
    best_l2: np.ndarray       # [faces_in_chunk, restarts] best (clamped) L2 so far
    best_total: np.ndarray    # [faces_in_chunk, restarts]
    render: Callable[[], np.ndarray]  # -> [faces_in_chunk, R, R, 3] best-so-far image


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
    checks.check_generator(generator)
    lr_images = np.asarray(lr_images, np.float32)
    op, per_face, factor = checks.search_operator(generator, lr_images, degradation)
    lo, hi = float(lr_images.min()), float(lr_images.max())
    if lo < 0 or hi > 1:
        warnings.warn(f"lr_images had values in [{lo:.3g}, {hi:.3g}]; clipped to [0, 1] (a "
                      "bicubic downscale of an image in [0, 1] overshoots it slightly)",
                      stacklevel=3)
        lr_images = np.clip(lr_images, 0.0, 1.0)
    n = lr_images.shape[0]
    op = op if per_face else degrade.per_row(op, n)   # one operator row per face
    face_ids = checks.check_face_ids(face_ids, n)
    bs = checks.faces_per_call(n, batch_size, mesh, spread_restarts)
    ndev = 1 if mesh is None else mesh.devices.size
    spread = bool(spread_restarts) and ndev > 1
    if spread:
        checks.check_spread(bs, config.restarts, ndev)
    platform = None if mesh is None else mesh.devices.flat[0].platform
    spec = Spec.make(generator.config, config, factor, platform)
    stages = stages_lib.build(spec, mesh, bs * spec.cfg.restarts, spread)
    weights = stages.prepare(generator)
    try:
        for start in range(0, n, bs):
            stop = min(start + bs, n)
            idx = list(range(start, stop)) + [stop - 1] * (bs - (stop - start))  # pad: copies
            ids = [face_ids[i] for i in idx]
            out = _search_chunk(spec, stages, weights, lr_images[idx],
                                degrade.take_rows(op, idx), ids, seed, (start, stop),
                                progress, mesh)
            out = jax.tree_util.tree_map(lambda x: np.asarray(x)[: stop - start], out)
            yield (start, stop), Result(**out, seed=seed,
                                        face_ids=np.asarray(ids[: stop - start]))
    finally:
        host_memory.release()  # the steps' scratch memory, kept between steps, goes back


def _search_chunk(spec: Spec, stages: stages_lib.Stages, weights: dict, lr: np.ndarray,
                  op: degrade.Operator, ids: list[int], seed: int, faces: tuple[int, int],
                  progress, mesh) -> dict:
    """One chunk's search: faces ``lr`` ``[nf, h, w, c]`` observed through ``op`` (one row
    per face), ``ids`` their face ids; returns :func:`~pulse_jax.search.steps.finalize`'s
    dict for the ``nf`` faces (pads included)."""
    restarts, steps = spec.cfg.restarts, spec.cfg.steps
    nf, real = len(ids), faces[1] - faces[0]
    draw, init, run, finalize = stages.draw, stages.init, stages.run, stages.finalize
    # Each row carries its face's operator (leaves [B, ...]; the default operator has none).
    rows = np.repeat(np.arange(nf), restarts)
    ref = degrade.Observation(np.repeat(lr, restarts, axis=0), degrade.take_rows(op, rows))
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
