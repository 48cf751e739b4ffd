"""Several processes on one batch: starting ``jax.distributed`` and meeting at the end.

Every process writes a ``.done`` marker (a small JSON payload) next to its manifest part
when its share is finished. :func:`wait_for_all` then blocks until every process got there:
through JAX's public multi-host barrier (``multihost_utils.sync_global_devices``) when a
``jax.distributed`` coordinator connects the processes, or, without one (processes started
independently on a shared folder), by process 0 polling for every process's marker with
this run's config hash. Either way the wait ends after ``timeout_s`` with a warning, so a
dead process cannot hang the merge forever.

:func:`hold_output` locks the output folder for the batch (:mod:`pulse_jax.folder_lock`):
the processes of one job share it and each holds its own slot, so another run or job is
refused. With a coordinator the processes then agree: when any of them was refused, all
of them raise, so none searches alone or waits at the end for a process that has left.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import threading
import time
from collections.abc import Iterator
from typing import Callable, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils

from pulse_jax import files, folder_lock
from pulse_jax.batch.manifest import part_name

__all__ = ["distributed_requested", "from_process_0", "hold_output", "initialize", "marker",
           "wait_for_all"]

DISTRIBUTED_ENV = "PULSE_JAX_DISTRIBUTED"


def process() -> tuple[int, int]:
    """This process's index and count in a ``jax.distributed`` job ((0, 1) alone)."""
    import jax
    return jax.process_index(), jax.process_count()


def distributed_requested(flag: bool) -> bool:
    """``flag``, or ``$PULSE_JAX_DISTRIBUTED`` set to 1/true/yes."""
    return bool(flag) or os.environ.get(DISTRIBUTED_ENV, "").lower() in ("1", "true", "yes")


def initialize(coordinator_address: str = "", num_processes: int = 0,
               process_id: int = -1) -> None:
    """``jax.distributed.initialize`` (before any other JAX call); empty/0/-1 arguments are
    auto-detected (TPU pods, SLURM, ...). ValueError with JAX's reason if it fails."""
    kwargs = {}
    if coordinator_address:
        kwargs["coordinator_address"] = coordinator_address
    if num_processes:
        kwargs["num_processes"] = int(num_processes)
    if process_id >= 0:
        kwargs["process_id"] = int(process_id)
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"jax.distributed.initialize({kwargs}) failed: {e}") from None


def marker(output_dir: pathlib.Path, process_index: int, process_count: int) -> pathlib.Path:
    """``manifest.part{p}of{n}.done``: process ``p`` finished its share."""
    return output_dir / (part_name(process_index, process_count)[:-len(".jsonl")] + ".done")


def _coordinator_barrier(name: str, timeout_s: float, log: Callable[[str], None]) -> bool:
    # The public barrier has no timeout of its own: wait for it on a daemon thread.
    error: list[Optional[BaseException]] = [None]

    def wait() -> None:
        try:
            multihost_utils.sync_global_devices(name)
        except Exception as e:  # noqa: BLE001 - reported below
            error[0] = e

    t = threading.Thread(target=wait, name=f"barrier {name}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive() or error[0] is not None:
        why = error[0] or f"not every process arrived within {timeout_s:.0f} s"
        log(f"warning: barrier {name!r} failed ({why}); merging what is on disk")
        return False
    return True


def _poll_markers(output_dir: pathlib.Path, process_count: int, timeout_s: float,
                  log: Callable[[str], None], config_hash: str) -> bool:
    others = [marker(output_dir, k, process_count) for k in range(process_count)]

    def ready(m: pathlib.Path) -> bool:
        try:
            return json.loads(m.read_text()).get("config_hash") == config_hash
        except (OSError, ValueError):
            return False

    deadline = time.time() + timeout_s
    while True:
        arrived = [ready(m) for m in others]
        if all(arrived):
            return True
        if time.time() > deadline:
            log(f"warning: processes {[k for k, r in enumerate(arrived) if not r]} did not "
                f"finish within {timeout_s:.0f} s; merging what is on disk")
            return False
        time.sleep(1.0)


def wait_for_all(name: str, output_dir: pathlib.Path, process_index: int, process_count: int,
                 timeout_s: float, log: Callable[[str], None], payload: dict) -> bool:
    """Write this process's marker (holding ``payload``, which has the run's
    ``config_hash``), then wait for the others (module doc). Returns True when all arrived
    within ``timeout_s``; processes other than 0 return at once without a coordinator."""
    files.atomic_write_text(marker(output_dir, process_index, process_count),
                             json.dumps(payload))
    if jax.process_count() == process_count:
        return _coordinator_barrier(name, timeout_s, log)
    if process_index != 0:
        return True
    return _poll_markers(output_dir, process_count, timeout_s, log, payload.get("config_hash"))


@contextlib.contextmanager
def hold_output(output_dir: pathlib.Path, process_index: int, process_count: int,
                log: Callable[[str], None]) -> Iterator[None]:
    """Holds ``output_dir`` for this process of a batch (module doc); every process of a
    coordinated job must call it.

    Raises:
      pulse_jax.folder_lock.OutputBusyError: another run holds the folder (in every process
        of a coordinated job when one of them was refused).
    """
    coordinated = process_count > 1 and jax.process_count() == process_count
    with contextlib.ExitStack() as stack:
        refused: Optional[folder_lock.OutputBusyError] = None
        try:
            stack.enter_context(folder_lock.hold(output_dir, process_index, process_count, log))
        except folder_lock.OutputBusyError as e:
            refused = e
        if coordinated:
            flags = np.asarray(multihost_utils.process_allgather(np.int32(refused is not None)))
            if refused is None and flags.any():
                who = [k for k, f in enumerate(flags.ravel()) if f]
                refused = folder_lock.OutputBusyError(
                    output_dir, f"output folder {output_dir} is in use by another pulse-jax "
                                f"run: process(es) {who} of this job were refused (their "
                                "messages name the holder)")
        if refused is not None:
            raise refused
        yield


def from_process_0(values: list[int]) -> list[int]:
    """Process 0's ``values`` (small ints, the same count in every process) in every
    process of a coordinated job; every process must call it."""
    rows = np.asarray(multihost_utils.process_allgather(np.asarray(values, np.int32)))
    return [int(v) for v in rows.reshape(-1, len(values))[0]]
