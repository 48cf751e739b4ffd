r"""``pulse-jax evaluate``: PULSE measured against ground-truth faces
(:func:`pulse_jax.evaluate.run`).

::

  pulse-jax evaluate --truth_dir=DIR --output_dir=OUT [--labels=utkface|FILE.csv]
                     [--checkpoint=DIR] [--lr_size=8] [--seed=N]
                     [--config.search.restarts=4 ...] [--config.degradation=...]

The config is ``upsample``'s (:mod:`pulse_jax.cli.config`): its ``search`` fields,
``degradation``, ``batch_size``, ``checkpoint`` and ``seed`` are used. Exit status 0 when
every face was measured, 1 when some truth image could not be read (named in
``metrics.jsonl``), 2 for a usage problem, 4 when the output folder is in use.
"""

from __future__ import annotations

from typing import Sequence

from absl import flags

from pulse_jax import exit_codes
from pulse_jax.cli import common, upsample_command
from pulse_jax.cli.common import UsageError

__all__ = ["command"]

_SHORTHANDS = {"output_dir": "output_dir", "checkpoint": "checkpoint", "seed": "seed"}


def _flags(argv: list[str]) -> flags.FlagValues:
    fv = upsample_command.config_flags_for("pulse-jax evaluate", argv)
    flags.DEFINE_string("truth_dir", None, "Ground-truth faces framed like the generator's: a "
                        "folder, a glob or a list file.", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Output folder (metrics.jsonl, summary.json, "
                        "report.md); rerun to resume.", flag_values=fv)
    flags.DEFINE_string("labels", "", "Group labels: utkface (from UTKFace file names) or a "
                        "CSV of name,key=value,...", flag_values=fv)
    flags.DEFINE_integer("lr_size", 0, "LR side of the default bicubic observation (0: "
                         "max(8, resolution / 32)).", flag_values=fv)
    flags.DEFINE_string("checkpoint", None, "Generator checkpoint (= --config.checkpoint).",
                        flag_values=fv)
    flags.DEFINE_integer("seed", None, "Random seed (= --config.seed).", flag_values=fv)
    flags.DEFINE_bool("print_config", False, "Print the resolved config and exit.",
                      flag_values=fv)
    return fv


def command(argv: Sequence[str]) -> int:
    """``pulse-jax evaluate ARGV...``; returns the exit status."""
    argv = list(argv)
    fv = _flags(argv)
    rest = common.parse(fv, "pulse-jax evaluate", argv, "--truth_dir=DIR --output_dir=OUT "
                        "[flags]")
    if rest:
        raise UsageError(f"unexpected arguments {rest} (see --help)")
    config = upsample_command.resolved_config(fv, _SHORTHANDS)
    if fv["print_config"].value:
        print(config.to_json_best_effort(indent=2, sort_keys=True), flush=True)
        return exit_codes.OK
    if not fv["truth_dir"].value or not fv["output_dir"].value:
        raise UsageError("evaluate needs --truth_dir and --output_dir")
    from pulse_jax.cli import config as run_config
    try:
        search_config, batch = run_config.split(config)
    except (ValueError, TypeError) as e:
        raise UsageError(f"invalid config: {e}") from None
    from pulse_jax import evaluate, images
    try:
        options = evaluate.EvaluateOptions(
            lr_size=fv["lr_size"].value, degradation=batch.degradation,
            labels=fv["labels"].value, seed=batch.seed, batch_size=batch.batch_size,
            progress=batch.progress)
        evaluate.labeller(options.labels)  # a bad labels file before the weights load
    except (OSError, ValueError) as e:
        raise UsageError(f"--labels: {e}") from None
    gen, path = upsample_command.generator_of(config, common.log)
    try:
        figures = evaluate.run(gen, fv["truth_dir"].value, config.output_dir, search_config,
                               options, checkpoint=str(config.checkpoint or path),
                               log=common.log)
    except images.ImageError as e:
        raise UsageError(f"no truth faces: {e}") from None
    except (ImportError, ValueError) as e:
        raise UsageError(str(e)) from None
    common.log(_format(figures, config.output_dir))
    return exit_codes.BAD_INPUT if figures["errors"] else exit_codes.OK


def _format(figures: dict, out: str) -> str:
    o = figures["overall"]
    pct = lambda v: "n/a" if v is None else f"{100 * v:.0f}%"
    dist = "n/a" if o["mean_identity_distance"] is None else f"{o['mean_identity_distance']:.3f}"
    return (f"evaluate: {o['n']} faces: success {pct(o['success_rate'])}, same identity "
            f"{pct(o['same_identity_rate'])} ({o['identity_measured']} measured), mean identity "
            f"distance {dist}; {out}/report.md")
