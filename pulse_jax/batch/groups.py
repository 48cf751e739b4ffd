"""Step 5 of a batch: each group of faces of one LR shape is searched chunk by chunk and
each chunk written as it ends (:mod:`pulse_jax.batch`, "Search").

A chunk is what one compiled call takes, :func:`pulse_jax.search.faces_per_call` faces (the
search's own count). When a chunk raises, its faces not yet written are recorded as failed
("search", retried by the next run) and the group goes on with the next chunk.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from pulse_jax import search as search_lib
from pulse_jax.batch import write
from pulse_jax.batch.ledger import Ledger
from pulse_jax.batch.load import Loaded

__all__ = ["search_groups"]


def search_groups(ledger: Ledger, groups: dict[tuple, list[Loaded]]) -> None:
    """Searches and writes every group, smallest observations first."""
    for shape in sorted(groups):
        _search_group(ledger, groups[shape])


def _degradation(ledger: Ledger, faces: list[Loaded]) -> Any:
    # Per-face operators (their masks) stack; otherwise the group shares one operator, so
    # the default keeps the search's own path for the reference's bicubic.
    return [g.op for g in faces] if ledger.plan.per_face else faces[0].op


def _search_group(ledger: Ledger, group: list[Loaded]) -> None:
    plan = ledger.plan
    opts, cfg, bar = plan.options, plan.cfg, ledger.bar
    factor = plan.generator.resolution // group[0].lr.shape[0]
    frame_w = max(2, len(str(cfg.steps)))
    offset = 0   # group[:offset] is written or recorded as failed
    while offset < len(group):
        part = group[offset:]

        def on_progress(p: search_lib.Progress, part=part) -> None:
            bar.step(p, p.faces[1] - p.faces[0])
            if ledger.on_progress is not None:
                ledger.on_progress(p)
            if opts.save_intermediate:
                faces = part[p.faces[0]:p.faces[1]]
                write.save_frames(plan.output_dir, [g.face for g in faces], p.render(),
                                  _degradation(ledger, faces), p.step - 1, frame_w)

        chunk = search_lib.faces_per_call(len(part), opts.batch_size, plan.mesh)
        end = min(offset + chunk, len(group))  # group[offset:end]: the chunk in flight
        try:
            bar.chunk_started()
            t0 = time.perf_counter()
            for (start, stop), res in search_lib.upsample_chunks(
                    plan.generator, np.stack([g.lr for g in part]), cfg, opts.seed,
                    face_ids=[g.face.face_id for g in part], batch_size=opts.batch_size,
                    mesh=plan.mesh, progress=on_progress,
                    degradation=_degradation(ledger, part)):
                wall = time.perf_counter() - t0
                ledger.summary.search_s += wall
                ledger.summary.face_steps += (stop - start) * cfg.steps
                for i, loaded in enumerate(part[start:stop]):
                    write.write_face(ledger, loaded, res, i, factor, wall, frame_w)
                    offset += 1  # written: a failure after this does not blame it
                    bar.faces_done(1)
                end = min(offset + chunk, len(group))
                bar.chunk_started()
                t0 = time.perf_counter()
        except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
            ledger.say(traceback.format_exc())
            failed = group[offset:end]  # the chunk that raised, less what it wrote
            for g in failed:
                f = g.face
                ledger.bad(f, f"{f.input}: search failed: {type(e).__name__}: {e}", "search")
            bar.faces_done(len(failed))
            offset = end
