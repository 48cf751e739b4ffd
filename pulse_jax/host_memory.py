"""How the host's C allocator treats XLA:CPU's scratch memory (Linux with glibc only).

XLA:CPU allocates a program's whole temporary buffer at every execution and frees it after.
That buffer is large (a search step on the shipped 64x64 model with 12 restarts: about
114 MiB; at 1024: about 1.3 GiB per restart), so glibc's malloc hands it out with ``mmap``
and gives it back with ``munmap`` every time: every step then touches fresh pages, and the
kernel zeroes and maps each one (about 30,000 page faults per 12-restart step, a fifth of
its CPU time; at 1024 about a third of the step). The first execution's pages can be kept
for the next one with three ``mallopt`` settings:

* ``M_ARENA_MAX=1``: one heap for every thread. XLA allocates from its worker threads,
  whose per-thread heaps are capped at 64 MiB and fall back to ``mmap`` above that;
* ``M_MMAP_MAX=0``: large blocks come from that heap, never from ``mmap``;
* ``M_TRIM_THRESHOLD`` off: freed memory at the heap's top is kept for the next step
  instead of going back to the kernel at every ``free``.

:func:`release` (``malloc_trim``) gives the kept memory back;
:func:`pulse_jax.search.upsample_chunks` (under :func:`pulse_jax.upsample` and every group
of :func:`pulse_jax.batch.run_batch`) calls it when its search ends, so a process that is
done searching does not keep a step's scratch memory.

``import pulse_jax`` calls :func:`configure` once. The thread settings only reach threads
that have not allocated yet, so it has full effect only when pulse_jax is imported before
JAX starts its CPU backend (before the first array is made); :func:`state` says what took
effect. Set ``PULSE_JAX_HOST_MALLOC=system`` to leave malloc as it is (measured in
docs/performance.md, "The host's allocator"). Nothing here changes a computed value.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys
from typing import Optional

__all__ = ["ENV", "MODES", "configure", "release", "state"]

ENV = "PULSE_JAX_HOST_MALLOC"
MODES = ("keep", "system")

# glibc's mallopt parameter numbers (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8

_state = {"mode": "system", "before_backend": None, "reason": "not configured"}


@functools.lru_cache(maxsize=None)
def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (musl has mallopt but not these knobs)
        libc.mallopt, libc.malloc_trim  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


def _backend_started() -> Optional[bool]:
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except Exception:  # a JAX without the private helper: unknown
        return None


def configure(mode: Optional[str] = None) -> dict:
    """Applies ``mode`` (default: ``$PULSE_JAX_HOST_MALLOC``, else ``"keep"``) and returns
    :func:`state`. ``"keep"``: the three settings of the module doc; ``"system"``: nothing
    (glibc's settings cannot be restored once changed, so ``"system"`` after ``"keep"``
    raises). Elsewhere than Linux with glibc it does nothing and says why."""
    mode = mode or os.environ.get(ENV) or "keep"
    if mode not in MODES:
        raise ValueError(f"{ENV} / mode must be one of {MODES}, got {mode!r}")
    if mode == "system":
        if _state["mode"] == "keep":
            raise RuntimeError("malloc was already set to keep memory; start a new process "
                               f"with {ENV}=system")
        _state.update(mode="system", reason=f"{ENV}=system" if os.environ.get(ENV) else "asked")
        return state()
    libc = _glibc()
    if libc is None:
        _state.update(mode="system", reason="not Linux with glibc")
        return state()
    started = _backend_started() if "jax" in sys.modules else False  # jax not imported: not started
    ok = all(libc.mallopt(p, v) == 1 for p, v in
             ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1)))
    if not ok:
        _state.update(mode="system", reason="mallopt refused a setting")
        return state()
    _state.update(mode="keep", before_backend=(None if started is None else not started),
                  reason=("JAX's backend had already started: its threads keep their heaps"
                          if started else "configured"))
    return state()


def release() -> bool:
    """Gives free heap memory back to the kernel (``malloc_trim(0)``); True if any was.
    A no-op (False) unless :func:`configure` set ``"keep"``."""
    if _state["mode"] != "keep":
        return False
    libc = _glibc()
    return bool(libc and libc.malloc_trim(0))


def state() -> dict:
    """``{"mode": "keep" | "system", "before_backend": bool | None, "reason": str}``:
    what :func:`configure` did; ``before_backend`` False means it came too late to reach
    XLA's threads (import pulse_jax before making arrays)."""
    return dict(_state)
