r"""``pulse-jax align``: every face of every photo, aligned for a generator, with LR versions.

::

  pulse-jax align --input_dir=photos --output_dir=aligned [--checkpoint=DIR] [--size=S]
                  [--lr_size=32] [--landmarks=5|68] [--template=auto|ffhq|checkpoint]
  pulse-jax upsample --input_dir=aligned/lr --output_dir=runs   # then PULSE on the LR faces

``--size`` defaults to the resolution of ``--checkpoint``'s generator (resolved as
``upsample`` does: a folder, ``ffhq1024``, ``default``, or empty for FFHQ if converted, else
the shipped model); ``--template=auto`` uses the checkpoint's stored template if its manifest
has one (``python -m pulse_jax.align.template --write``), else FFHQ's. ``--landmarks=68`` is
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


def _generator_facts(choice: str, log: Callable[[str], None]
                     ) -> tuple[Optional[int], Optional[dict], str]:
    """(resolution, manifest, path) of the checkpoint ``choice``; (None, None, "") if no
    checkpoint can be found and none was asked for."""
    from pulse_jax import weights
    from pulse_jax.weights import checkpoint as ckpt
    try:
        path = weights.resolve_checkpoint(choice, log=log)
        manifest = ckpt.read_manifest(path)
    except (weights.CheckpointError, OSError, ValueError):
        if choice:
            raise
        return None, None, ""
    return int(manifest["config"]["resolution"]), manifest, str(path)


def align_main(argv: list[str], log: Callable[[str], None] | None = None) -> int:
    """Runs ``pulse-jax align`` with ``argv`` (the flags after ``align``); returns the exit
    status. Problems with flags, checkpoint or inputs print one message and return 2."""
    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)
    log = log or say
    fv = _flags()
    if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv):
        print(f"{_USAGE}\n\n{fv.get_help()}")
        return exit_codes.OK
    try:
        rest = fv(["pulse-jax align", *argv])[1:]
        if rest:
            raise ValueError(f"unexpected arguments {rest} (flags look like --input_dir=DIR)")
        if not fv.input_dir or not fv.output_dir:
            raise ValueError("--input_dir and --output_dir are required")
        from pulse_jax.align import folder, framing, landmarks
        landmarks.load_dlib()
        landmarks.predictor_path(int(fv.landmarks))
        resolution, manifest, path = _generator_facts(fv.checkpoint, log)
        template = framing.template_for(manifest, fv.template, path)
        size = fv.size or resolution or 1024
        log(f"pulse-jax align: {size}x{size} crops, template {template.name}, "
            f"{fv.landmarks} landmarks" + (f", for {path}" if path else ""))
        summary = folder.align_folder(fv.input_dir, fv.output_dir, size, fv.lr_size,
                                      template, int(fv.landmarks), log=log,
                                      min_face_px=fv.min_face_px)
    except folder_lock.OutputBusyError as e:
        say(f"pulse-jax align: {e}")
        return exit_codes.BUSY
    except (flags.Error, ValueError, OSError, ImportError) as e:
        # ImageError (no photos) and CheckpointError are ValueErrors.
        say(f"pulse-jax align: {e}")
        return exit_codes.USAGE
    log(summary.format())
    log(f"manifest: {pathlib.Path(fv.output_dir) / folder.MANIFEST}")
    return exit_codes.BAD_INPUT if summary.errors else exit_codes.OK
