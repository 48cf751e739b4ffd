r"""``pulse-jax template``: a generator's framing template, measured on faces it draws
(:func:`pulse_jax.align.template.measure_checkpoint`)::

  pulse-jax template [--checkpoint=DIR] [--samples=200] [--seed=0] [--write]

prints the template as JSON; ``--write`` also stores it in the checkpoint's manifest
(:func:`pulse_jax.align.template.write_template`), so ``pulse-jax align --template=checkpoint``
frames faces for that generator. Exit status 0, or 2 with one message (bad flags, no
checkpoint, no face found, the align extra missing). (It was ``python -m
pulse_jax.align.template``, same flags.)
"""

from __future__ import annotations

import json
from typing import Sequence

from absl import flags

from pulse_jax import exit_codes
from pulse_jax.cli import common
from pulse_jax.cli.common import UsageError

__all__ = ["command"]


def _flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("checkpoint", "default", "generator checkpoint: a folder, ffhq1024 or "
                        "default (the shipped model)", flag_values=fv)
    flags.DEFINE_integer("samples", 200, "faces to render", flag_values=fv)
    flags.DEFINE_integer("seed", 0, "random seed of the faces", flag_values=fv)
    flags.DEFINE_bool("write", False, "store the template in the checkpoint's manifest",
                      flag_values=fv)
    return fv


def command(argv: Sequence[str]) -> int:
    """``pulse-jax template ARGV...``; returns the exit status."""
    from pulse_jax.align import template
    fv = _flags()
    rest = common.parse(fv, "pulse-jax template", argv, "[--checkpoint=DIR] [flags]")
    if rest:
        raise UsageError(f"template: unexpected arguments {rest}")
    try:
        path, tpl = template.measure_checkpoint(fv.checkpoint, fv.samples, fv.seed)
    except (ValueError, OSError, ImportError) as e:  # CheckpointError is a ValueError
        raise UsageError(f"template: {e}") from None
    print(json.dumps(tpl.to_dict(), indent=1))
    if fv.write:
        template.write_template(path, tpl)
        common.log(f"written to {path}")
    return exit_codes.OK
