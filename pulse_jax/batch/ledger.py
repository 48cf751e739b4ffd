"""What one process of a batch writes and has done: its manifest lines, the faces finished,
the counts, and its messages (module doc of :mod:`pulse_jax.batch`, steps 3 to 7)."""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Optional

from pulse_jax import files
from pulse_jax.batch.faces import Face
from pulse_jax.batch.manifest import MANIFEST, part_name
from pulse_jax.batch.plan import Plan
from pulse_jax.batch.progress import FaceBar
from pulse_jax.batch.summary import Summary, count_records

__all__ = ["Ledger"]


class Ledger:
    """One process's record of a batch.

    Attributes:
      manifest: the file this process appends to (``manifest.jsonl``, or its part with
        several processes).
      summary: the counts so far.
      shas, mask_shas: each input's (and with ``mask()`` its mask's) SHA-256, None when
        unreadable; filled on resume, recorded with every line.
      finished: face name -> its current record (this run's or an earlier run's).
      bar: the progress bar (none until the faces to do are known).
      on_progress: told every :class:`~pulse_jax.search.Progress` of the search (None: only
        the bar is), for a caller's own display (the web app's).
    """

    def __init__(self, plan: Plan, log: Callable[[str], None]):
        self.plan = plan
        self.manifest = plan.output_dir / (
            MANIFEST if plan.process_count == 1 else part_name(plan.process_index,
                                                               plan.process_count))
        self.summary = Summary(faces=len(plan.mine), config_hash=plan.config_hash,
                               output_dir=str(plan.output_dir),
                               process_index=plan.process_index,
                               process_count=plan.process_count)
        self.shas: dict[pathlib.Path, Optional[str]] = {}
        self.mask_shas: dict[pathlib.Path, Optional[str]] = {}
        self.finished: dict[str, dict] = {}
        self.bar = FaceBar(0, False, "")
        self.on_progress: Optional[Callable] = None
        self._log = log

    def say(self, msg: str) -> None:
        self.bar.log(self._log, msg)

    def record(self, f: Face, rec: dict) -> None:
        """Appends ``f``'s manifest line (``rec`` with the face's identity and checksums)."""
        rec = {"input": str(f.input), "name": f.name, "face_id": f.face_id, **rec,
               "config_hash": self.plan.config_hash, "input_sha256": self.shas.get(f.input),
               **({"mask_sha256": self.mask_shas.get(f.input)} if self.plan.per_face else {}),
               "process": self.plan.process_index,
               "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        files.append_jsonl(self.manifest, rec)
        self.finished[f.name] = rec

    def bad(self, f: Face, message: str, kind: str) -> None:
        """Records ``f`` as failed: ``kind`` "input" (kept until its bytes change) or
        "search" (retried by the next run)."""
        self.say(f"error: {message}")
        self.summary.errors.append((str(f.input), message))
        self.record(f, {"error": message, "error_kind": kind})

    def count(self) -> None:
        """The summary's outcome counts over this process's faces' current records."""
        count_records({f.name: self.finished[f.name] for f in self.plan.mine
                       if f.name in self.finished}, self.summary)
