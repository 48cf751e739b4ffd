"""Timing of a whole :func:`pulse_jax.upsample` call, step by step, through the public API,
and the matmul peak the figures are compared with.

Shared by the benchmark scripts (no flags here). ``chunk_steps=1`` makes the progress
callback fire after every step; it reads the step's losses back to the host, so the time
between two callbacks is one step's wall time, dispatch and loop overheads included.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

import pulse_jax


def time_upsample(gen: pulse_jax.Generator, lr: np.ndarray, config: pulse_jax.SearchConfig,
                  seed: int = 0) -> tuple[float, list[float]]:
    """Runs ``upsample`` once; returns (seconds to the end of step 1, [seconds of each later step]).

    The first figure includes tracing and compilation; the list is what a long run pays per step.
    """
    config = dataclasses.replace(config, chunk_steps=1)
    marks = []
    t0 = time.perf_counter()
    pulse_jax.upsample(gen, lr, config, seed=seed,
                       progress=lambda p: marks.append(time.perf_counter()))
    return marks[0] - t0, list(np.diff(marks))


def matmul_peak(n: int, precision: str = "highest") -> float:
    """Sustained float32 ``[n, n] @ [n, n]`` FLOP/s of the default device (about 2 s), the
    yardstick for the benchmarks' "% of peak"."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: jnp.dot(x, x, precision=precision))
    f(a).block_until_ready()
    reps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < 2.0 or reps < 3:
        f(a).block_until_ready()
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0)
