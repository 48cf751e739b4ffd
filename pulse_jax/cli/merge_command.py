"""``pulse-jax merge OUTPUT_DIR``: folds a multi-process run's manifest parts into
``manifest.jsonl`` (idempotent)."""

from __future__ import annotations

import pathlib
from typing import Sequence

from absl import flags

from pulse_jax import exit_codes
from pulse_jax.cli import common
from pulse_jax.cli.common import UsageError

__all__ = ["command"]


def command(argv: Sequence[str]) -> int:
    """``pulse-jax merge ARGV...``; returns the exit status."""
    rest = common.parse(flags.FlagValues(), "pulse-jax merge", argv, "OUTPUT_DIR")
    if len(rest) != 1:
        raise UsageError(f"merge: give one output folder, got {rest}")
    from pulse_jax import batch
    d = pathlib.Path(rest[0])
    if not d.is_dir():
        raise UsageError(f"{d}: no such folder")
    try:
        target = batch.merge_manifests(d)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"{target}: {len(batch.read_records(d))} records")
    return exit_codes.OK
