"""The compiled programs of one PULSE search, for a :class:`~pulse_jax.search.steps.Spec`, a
device layout and a batch of ``B = faces x restarts`` rows (:func:`build`):

* ``draw(keys [B]) -> (params, frozen_noise)``: random starts, one per key;
* ``init(params, frozen) -> SearchState``;
* ``prepare(generator) -> weights``: the frozen generator's weight arithmetic, done once;
* ``run(weights, ref, state, n) -> state``: ``n`` projected steps, with the configured loop
  (``SearchConfig.loop``: "host", a Python loop over one compiled step that donates its
  state, or "device", a ``fori_loop`` of ``n`` steps in one compiled call);
* ``finalize(weights, ref, state) -> dict``: each face's chosen restart and images.

``ref`` is a :class:`~pulse_jax.degrade.Observation` or a plain array
(:func:`pulse_jax.search.steps.as_observation`). With a mesh, the programs run under
``shard_map`` over its "faces" axis (:func:`build`).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax

from pulse_jax.search.steps import (SearchState, Spec, draw, finalize, init_state, prepare,
                                    restart_keys, step)

__all__ = ["Stages", "batched_specs", "build", "host_loop", "one_step", "run_steps"]


def run_steps(spec: Spec, weights: dict, ref_lr: Any, state: SearchState,
               n: jax.Array) -> SearchState:
    """``n`` steps in one compiled call (the "device" loop)."""
    with jax.default_matmul_precision(spec.cfg.precision):
        return jax.lax.fori_loop(0, n, lambda _, s: step(spec, weights, ref_lr, s), state)


def one_step(spec: Spec, weights: dict, ref_lr: Any, state: SearchState) -> SearchState:
    """One step as its own program (the "host" loop calls it ``n`` times)."""
    with jax.default_matmul_precision(spec.cfg.precision):
        return step(spec, weights, ref_lr, state)


def host_loop(step: Callable) -> Callable:
    """``run(weights, ref, state, n)`` as a Python loop over the compiled ``step``."""
    def run(weights, ref_lr, state, n):
        for _ in range(int(n)):
            state = step(weights, ref_lr, state)
        return state
    return run


class Stages(NamedTuple):
    """The compiled programs of one search. ``prepare(gen)`` gives the weights that
    ``run(weights, ref, state, n)`` (``n`` steps with the configured loop) and
    ``finalize(weights, ref, state)`` read; ``step`` is the compiled program ``run`` calls
    (one step for the host loop, ``n`` steps for the device loop), for benchmarks."""

    draw: Callable
    init: Callable
    prepare: Callable
    run: Callable
    finalize: Callable
    step: Any


def batched_specs(tree: Any, batch: int, axis: str) -> Any:
    """PartitionSpecs: leaves with a leading ``batch`` axis are split, scalars replicated."""
    P = jax.sharding.PartitionSpec
    return jax.tree_util.tree_map(
        lambda x: P(axis) if (x.ndim >= 1 and x.shape[0] == batch) else P(), tree)


@functools.lru_cache(maxsize=32)
def build(spec: Spec, mesh: Optional[jax.sharding.Mesh], batch: int,
          spread_restarts: bool = False) -> Stages:
    """The jitted stages for one spec and device layout.

    With a mesh, draw, init and run go under ``shard_map`` over its "faces" axis: every
    device runs the very program a single device runs on its own slice of the ``batch``
    rows, so results do not depend on the number of devices, only on the per-device batch
    shape. Each device holds whole faces (all their restarts), and so does ``finalize``;
    with ``spread_restarts`` a device may hold part of a face's restarts (the rows only
    need to divide evenly), and ``finalize``, which compares a face's restarts, runs on the
    whole batch, the compiler moving what it needs between devices.
    """
    draw_b = lambda keys: jax.vmap(functools.partial(draw, spec))(keys)
    init = functools.partial(init_state, spec)
    host = spec.cfg.loop == "host"
    run = functools.partial(one_step if host else run_steps, spec)
    n_faces = batch // spec.cfg.restarts

    # Placed once where the steps read them: every device holds the weights.
    P = jax.sharding.PartitionSpec
    replicated = None if mesh is None else jax.sharding.NamedSharding(mesh, P())
    prep = jax.jit(functools.partial(prepare, spec), out_shardings=replicated)

    def assemble(draw_b, init, run, fin):
        return Stages(draw_b, init, prep, host_loop(run) if host else run, fin, run)

    if mesh is None:
        fin = lambda weights, ref, state: finalize(spec, weights, ref, state, n_faces)
        return assemble(jax.jit(draw_b), jax.jit(init), jax.jit(run, donate_argnums=2),
                        jax.jit(fin))
    ndev = mesh.devices.size
    local = batch // ndev
    key_shape = jax.eval_shape(lambda: restart_keys(0, [0], 1))
    params_shape = jax.eval_shape(draw_b, jax.ShapeDtypeStruct((local,) + key_shape.shape[1:],
                                                              key_shape.dtype))
    state_shape = jax.eval_shape(init, *params_shape)
    sspec = batched_specs(state_shape, local, "faces")

    def smap(f, in_specs, out_specs):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

    run_specs = (P(), P("faces"), sspec) if host else (P(), P("faces"), sspec, P())
    if spread_restarts:  # a face's restarts may span devices: finalize the whole batch
        fin = jax.jit(lambda weights, ref, state: finalize(spec, weights, ref, state, n_faces))
    else:
        fin = jax.jit(smap(lambda weights, ref, state: finalize(spec, weights, ref, state,
                                                                 n_faces // ndev),
                           (P(), P("faces"), sspec), P("faces")))
    return assemble(
        jax.jit(smap(draw_b, P("faces"), P("faces"))),
        jax.jit(smap(init, (P("faces"), P("faces")), sspec)),
        jax.jit(smap(run, run_specs, sspec), donate_argnums=2),
        fin,
    )
