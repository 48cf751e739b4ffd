"""Step 3 of a batch: the faces that no current record covers (:mod:`pulse_jax.batch`,
"Resume")."""

from __future__ import annotations

import pathlib
from typing import Optional

from pulse_jax import files
from pulse_jax.batch.faces import Face
from pulse_jax.batch.ledger import Ledger
from pulse_jax.batch.load import mask_path
from pulse_jax.batch.manifest import read_records

__all__ = ["pending"]


def pending(ledger: Ledger) -> list[Face]:
    """This process's faces that still need a search, in order; the others count as
    skipped (and their recorded input errors as errors). Temporary files that a killed run
    left for the faces to do are removed."""
    plan, summary = ledger.plan, ledger.summary
    by_name: dict[str, list[dict]] = {}
    for r in read_records(plan.output_dir):
        by_name.setdefault(r.get("name"), []).append(r)
    todo = []
    for f in plan.mine:
        sha = ledger.shas.setdefault(f.input, _sha256_file(f.input))
        if plan.per_face:
            ledger.mask_shas.setdefault(f.input, _sha256_file(mask_path(f.input)))
        prev = [r for r in by_name.get(f.name, [])
                if _complete(r, plan.config_hash, sha, plan.output_dir)
                and r.get("mask_sha256") == ledger.mask_shas.get(f.input)]
        if prev:
            ledger.finished[f.name] = prev[-1]
            summary.skipped += 1
            if "error" in prev[-1]:
                summary.errors.append((str(f.input), prev[-1]["error"]))
        else:
            todo.append(f)
    _clean_tmp(plan.output_dir, {v for f in todo for v in f.files().values()})
    if summary.skipped:
        ledger.say(f"resuming: {summary.skipped} of {len(plan.mine)} faces already complete "
                   f"(config hash {plan.config_hash}); {len(todo)} to do")
    return todo


def _sha256_file(path: pathlib.Path) -> Optional[str]:
    try:
        return files.sha256_file(path)
    except OSError:
        return None


def _complete(r: dict, h: str, sha: Optional[str], output_dir: pathlib.Path) -> bool:
    """Whether record ``r`` is current for config hash ``h`` and input checksum ``sha``: an
    input error stands until the bytes change, a search error is retried, and a result
    needs its HR file (when it wrote one)."""
    if r.get("config_hash") != h or r.get("input_sha256") != sha:
        return False
    if "error" in r:
        return r.get("error_kind") == "input"
    out = r.get("output")
    return out is None or (output_dir / pathlib.Path(out).name).is_file()


def _clean_tmp(output_dir: pathlib.Path, targets: set[str]) -> None:
    """Remove temporary files of our atomic writes (``.{target}.{random}.tmp``) left by a kill."""
    if not output_dir.is_dir():
        return
    for p in output_dir.iterdir():
        n = p.name
        if n.startswith(".") and n.endswith(".tmp") and p.is_file():
            target = n[1:-len(".tmp")].rsplit(".", 1)[0]
            if target in targets:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass
