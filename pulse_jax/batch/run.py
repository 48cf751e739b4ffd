""":func:`run_batch`: the batch as a chain of named steps, plan -> resume -> load -> search
(writing each chunk as it ends) -> merge (:mod:`pulse_jax.batch` describes each)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any, Optional

from pulse_jax import search as search_lib
from pulse_jax.batch import multihost
from pulse_jax.batch.groups import search_groups
from pulse_jax.batch.ledger import Ledger
from pulse_jax.batch.load import load_faces
from pulse_jax.batch.manifest import merge_manifests, part_files
from pulse_jax.batch.options import BatchOptions
from pulse_jax.batch.plan import Plan, make_plan
from pulse_jax.batch.progress import FaceBar
from pulse_jax.batch.resume import pending
from pulse_jax.batch.summary import Summary, merged_summary
from pulse_jax.generator import Generator

__all__ = ["run_batch"]

_logger = logging.getLogger("pulse_jax.batch")


def run_batch(
    generator: Generator,
    inputs: Any,
    output_dir: os.PathLike,
    search_config: search_lib.SearchConfig = search_lib.SearchConfig(),
    options: Optional[BatchOptions] = None,
    *,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
    log: Optional[Callable[[str], None]] = None,
    on_progress: Optional[Callable[[search_lib.Progress], None]] = None,
    **option_fields: Any,
) -> Summary:
    """Upsample every face named by ``inputs`` into ``output_dir`` (see the module doc).

    Args:
      generator: the :class:`Generator` (with a Gaussian fit).
      inputs: what :func:`pulse_jax.images.discover_inputs` accepts (a folder, glob, list
        file, file, or a sequence of them), or a list of paths.
      output_dir: created if missing.
      search_config: the :class:`pulse_jax.search.SearchConfig`.
      options: the :class:`BatchOptions`; ``option_fields`` (e.g. ``seed=3``) replace
        fields of it, or of the defaults.
      process_index, process_count: this process's share (default: ``jax.process_index()``
        and ``jax.process_count()``).
      log: called with each message (bad inputs, warnings); default ``logging.info``.
      on_progress: called with every :class:`pulse_jax.search.Progress` of the search (as
        :func:`pulse_jax.upsample`'s ``progress``; its ``faces`` index the chunk in flight),
        beside the bar. Not ``progress``: that name is :class:`BatchOptions`' field (the
        bar on or off), which ``**option_fields`` takes.

    Returns:
      The :class:`Summary` (use :func:`exit_status` for a process exit code).

    Raises:
      pulse_jax.images.ImageError: ``inputs`` names nothing (an empty folder, a missing path).
      pulse_jax.folder_lock.OutputBusyError: another run is writing into ``output_dir``
        (nothing was done; exit status 4 on the command line).
      ValueError: invalid arguments.
    """
    t_start = time.time()
    plan = make_plan(generator, inputs, output_dir, search_config, options, option_fields,
                     process_index, process_count)
    ledger = Ledger(plan, log or _logger.info)
    ledger.on_progress = on_progress
    _announce(plan, ledger)
    out, pi, pc = plan.output_dir, plan.process_index, plan.process_count
    out.mkdir(parents=True, exist_ok=True)
    with multihost.hold_output(out, pi, pc, ledger.say):  # before anything is touched
        if pc > 1:
            multihost.marker(out, pi, pc).unlink(missing_ok=True)  # an earlier run's
        todo = pending(ledger)
        ledger.bar = FaceBar(len(todo), plan.options.progress, "PULSE")
        try:
            search_groups(ledger, load_faces(ledger, todo))
        finally:
            ledger.bar.close()
        ledger.count()
        ledger.summary.wall_s = time.time() - t_start
        _merge(ledger)
    return ledger.summary


def _announce(plan: Plan, ledger: Ledger) -> None:
    if plan.process_index == 0:
        r = plan.generator.resolution
        n_dev = 1 if plan.mesh is None else plan.mesh.size
        ledger.say(f"pulse-jax: {plan.inputs} input file(s) -> {plan.output_dir}; generator "
                   f"{r}x{r}; {n_dev} local device(s) x {plan.process_count} process(es)")


def _merge(ledger: Ledger) -> None:
    """Step 7: wait for the other processes; process 0 merges their parts."""
    plan, s = ledger.plan, ledger.summary
    out, pi, pc, h = plan.output_dir, plan.process_index, plan.process_count, plan.config_hash
    if pc == 1:
        if part_files(out):
            merge_manifests(out)  # leftovers of an earlier multi-process run
        return
    payload = {"config_hash": h, "done": s.done, "skipped": s.skipped, "time": time.time()}
    multihost.wait_for_all(f"pulse_jax_batch_end_{h}", out, pi, pc,
                           plan.options.merge_timeout_s, ledger.say, payload)
    if pi == 0:
        counts = []
        for k in range(pc):
            try:
                counts.append(json.loads(multihost.marker(out, k, pc).read_text()))
            except (OSError, ValueError):
                pass
        merge_manifests(out)
        s.merged = merged_summary(out, plan.all_faces, h, s, counts)
