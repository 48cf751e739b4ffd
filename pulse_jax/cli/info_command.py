"""``pulse-jax info [DIR] [--arrays]``: a checkpoint's manifest, as JSON on stdout."""

from __future__ import annotations

import json
import pathlib
from typing import Sequence

from absl import flags

from pulse_jax import exit_codes
from pulse_jax.cli import common
from pulse_jax.cli.common import UsageError

__all__ = ["command"]


def command(argv: Sequence[str]) -> int:
    """``pulse-jax info ARGV...``; returns the exit status."""
    fv = flags.FlagValues()
    flags.DEFINE_bool("arrays", False, "also list every array's shape", flag_values=fv)
    rest = common.parse(fv, "pulse-jax info", argv, "[CHECKPOINT_DIR] [--arrays]  (default: "
                        "the cache's ffhq1024)")
    if len(rest) > 1:
        raise UsageError(f"info: one checkpoint folder at most, got {rest}")
    from pulse_jax import weights
    path = pathlib.Path(rest[0]).expanduser() if rest else weights.ffhq_checkpoint()
    try:
        manifest = weights.read_manifest(path)
    except weights.CheckpointError as e:
        raise UsageError(str(e)) from None
    if not fv.arrays:
        arrays = manifest.pop("arrays", {})
        manifest["arrays"] = f"{len(arrays)} arrays (--arrays to list them)"
    print(json.dumps(manifest, indent=2))
    return exit_codes.OK
