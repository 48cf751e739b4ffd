r"""``pulse-jax align``: every face of every photo, aligned for a generator, with LR versions.

::

  pulse-jax align --input_dir=photos --output_dir=aligned [--checkpoint=DIR] [--size=S]
                  [--lr_size=32] [--landmarks=5|68] [--template=auto|ffhq|checkpoint]
  pulse-jax upsample --input_dir=aligned/lr --output_dir=runs   # then PULSE on the LR faces

The flags are those of :func:`pulse_jax.align.pipeline.align_for_checkpoint`, which does the
work: ``--size`` defaults to the resolution of ``--checkpoint``'s generator (resolved as
``upsample`` does: a folder, ``ffhq1024``, ``default``, or empty for FFHQ if converted, else
the shipped model); ``--template=auto`` uses the checkpoint's stored template if its manifest
has one (``pulse-jax template --write``), else FFHQ's. ``--landmarks=68`` is
the reference's exact recipe but its model is for non-commercial use only (docs/align.md).

Exit status (:mod:`pulse_jax.exit_codes`): 0 every photo gave its faces; 1 some photo or face
failed (named on stderr and in the manifest; the rest were done); 2 a usage problem (bad
flags, no photos, no checkpoint, the align extra missing); 4 another run is writing into
``--output_dir`` (it is named; nothing was done).
"""

from __future__ import annotations

import pathlib
import sys
from typing import Callable, Optional

from absl import flags

from pulse_jax import exit_codes, folder_lock
from pulse_jax.cli import common

__all__ = ["align_main"]

_USAGE = "usage: pulse-jax align --input_dir=PHOTOS --output_dir=OUT [flags]"


def _flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("input_dir", None, "photos: a folder, a glob or a list file",
                        flag_values=fv)
    flags.DEFINE_string("output_dir", None, "where the crops, lr/ and manifest.jsonl go",
                        flag_values=fv)
    flags.DEFINE_string("checkpoint", "", "generator checkpoint (sets --size and the "
                        "template): a folder, ffhq1024, default, or empty", flag_values=fv)
    flags.DEFINE_integer("size", None, "crop side (default: the generator's resolution, "
                         "else 1024)", flag_values=fv)
    flags.DEFINE_integer("lr_size", 32, "LR side, dividing --size (0: no LR files)",
                         flag_values=fv)
    flags.DEFINE_enum("landmarks", "5", ["5", "68"], "landmark model: 5 (licence-clean) or "
                      "68 (the reference's recipe; non-commercial)", flag_values=fv)
    flags.DEFINE_enum("template", "auto", ["auto", "ffhq", "checkpoint"], "framing: "
                      "the checkpoint's stored template (auto: if it has one) or FFHQ's",
                      flag_values=fv)
    flags.DEFINE_integer("min_face_px", 64, "refuse faces whose crop is smaller in the photo",
                         flag_values=fv)
    return fv


def _say(msg: str) -> None:
    print(f"pulse-jax align: {msg}", file=sys.stderr, flush=True)


def align_main(argv: list[str], log: Optional[Callable[[str], None]] = None) -> int:
    """Runs ``pulse-jax align`` with ``argv`` (the flags after ``align``); returns the exit
    status. Problems with flags, checkpoint or inputs print one message and return 2."""
    from pulse_jax.align import folder, pipeline
    log = log or common.log
    fv = _flags()
    if any(a in common.HELP for a in argv):
        print(f"{_USAGE}\n\n{fv.get_help()}")
        return exit_codes.OK
    try:
        rest = fv(["pulse-jax align", *argv])[1:]
        if rest:
            raise ValueError(f"unexpected arguments {rest} (flags look like --input_dir=DIR)")
        if not fv.input_dir or not fv.output_dir:
            raise ValueError("--input_dir and --output_dir are required")
        summary = pipeline.align_for_checkpoint(
            fv.input_dir, fv.output_dir, fv.checkpoint, size=fv.size or 0,
            lr_size=fv.lr_size, num_landmarks=int(fv.landmarks), template=fv.template,
            log=log, min_face_px=fv.min_face_px)
    except folder_lock.OutputBusyError as e:
        _say(str(e))
        return exit_codes.BUSY
    except (flags.Error, ValueError, OSError, ImportError) as e:
        # ImageError (no photos) and CheckpointError are ValueErrors.
        _say(str(e))
        return exit_codes.USAGE
    log(summary.format())
    log(f"manifest: {pathlib.Path(fv.output_dir) / folder.MANIFEST}")
    return exit_codes.BAD_INPUT if summary.errors else exit_codes.OK
