"""What a batch did: counts per process (and merged over processes), and the exit status."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Optional

import numpy as np

from pulse_jax import exit_codes
from pulse_jax.batch.faces import Face
from pulse_jax.batch.manifest import read_records

__all__ = ["Summary", "count_records", "exit_status", "merged_summary"]


@dataclasses.dataclass
class Summary:
    """Counts for one process's share of faces (or, on process 0 after a merge, ``merged``
    holds the same counts over all processes' faces)."""

    faces: int = 0          # faces in this share
    done: int = 0           # searched in this run
    skipped: int = 0        # already complete (same config hash) from an earlier run
    succeeded: int = 0      # l2 <= eps (this run and skipped)
    failed: int = 0         # a result, but l2 > eps
    bad: int = 0            # bad input files or searches that raised
    mean_l2: Optional[float] = None   # over faces with a result
    wall_s: float = 0.0
    search_s: float = 0.0
    face_steps: int = 0     # sum over searched faces of steps (restarts run in parallel)
    config_hash: str = ""
    output_dir: str = ""
    process_index: int = 0
    process_count: int = 1
    errors: list = dataclasses.field(default_factory=list)   # [(input, message)]
    merged: Optional["Summary"] = None

    @property
    def faces_per_s(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        """Search steps per second, counting one step of one face as one."""
        return self.face_steps / self.wall_s if self.wall_s > 0 else 0.0

    def format(self) -> str:
        s = self.merged or self
        scope = ("" if self.process_count == 1 else
                 " (all processes)" if self.merged else
                 f" (process {self.process_index} of {self.process_count})")
        l2 = "n/a" if s.mean_l2 is None else f"{s.mean_l2:.5f}"
        lines = [
            f"PULSE batch{scope}: {s.faces} faces: {s.done} done, {s.skipped} skipped "
            f"(already complete), {s.succeeded} succeeded (l2 <= eps), {s.failed} missed eps, "
            f"{s.bad} bad",
            f"  mean l2 {l2}; {self.done} faces in {self.wall_s:.1f} s "
            f"({self.faces_per_s:.3g} faces/s, {self.steps_per_s:.3g} face-steps/s); "
            f"config hash {self.config_hash}; output {self.output_dir}",
        ]
        return "\n".join(lines)


def exit_status(summary: Summary) -> int:
    """0: every face within eps; 1: a bad input or failed search; 3: some face missed eps."""
    s = summary.merged or summary
    if s.bad:
        return exit_codes.BAD_INPUT
    if s.failed:
        return exit_codes.MISSED_EPS
    return exit_codes.OK


def count_records(records: dict[str, dict], summary: Summary) -> None:
    l2s = []
    for r in records.values():
        if "error" in r:
            summary.bad += 1
        elif r.get("success"):
            summary.succeeded += 1
        else:
            summary.failed += 1
        if r.get("l2") is not None:
            l2s.append(float(r["l2"]))
    summary.mean_l2 = float(np.mean(l2s)) if l2s else None


def merged_summary(output_dir: pathlib.Path, faces: list[Face], h: str,
                    local: Summary, counts: list[dict]) -> Summary:
    latest: dict[str, dict] = {}
    for r in read_records(output_dir):
        if r.get("config_hash") == h:
            latest[r.get("name")] = r
    recs = {f.name: latest[f.name] for f in faces if f.name in latest}
    s = Summary(faces=len(faces), config_hash=h, output_dir=local.output_dir,
                process_count=local.process_count)
    count_records(recs, s)
    s.bad += len(faces) - len(recs)  # faces no process recorded (a process died)
    s.done = sum(int(c.get("done", 0)) for c in counts)
    s.skipped = sum(int(c.get("skipped", 0)) for c in counts)
    return s
