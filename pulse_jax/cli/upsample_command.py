r"""``pulse-jax upsample``: its flags, and :func:`upsample` for a resolved config.

The flags become a :mod:`pulse_jax.cli.config` config (``--config.FIELD=VALUE`` overrides a
field; ``--input_dir``, ``--output_dir``, ``--checkpoint``, ``--seed``, ``--align``,
``--upscale``, ``--faces`` and ``--replace_large_faces`` are shorthands that win over them); :func:`upsample` loads the generator and calls one library
function: :func:`pulse_jax.batch.run_batch` on LR faces, or with ``--align``
:func:`pulse_jax.align.upsample_photos` on photos (align, search, paste back).
"""

from __future__ import annotations

import pathlib
from typing import Callable, Sequence

from absl import flags

from pulse_jax import exit_codes
from pulse_jax.cli import common
from pulse_jax.cli.common import UsageError

__all__ = ["command", "config_flags_for", "generator_of", "resolved_config", "upsample"]

_SHORTHANDS = {"input_dir": "input_dir", "output_dir": "output_dir", "checkpoint": "checkpoint",
               "seed": "seed", "align": "align", "upscale": "align_upscale",
               "faces": "align_faces", "replace_large_faces": "align_replace_large_faces"}
# The source checkout's root (pulse_jax/cli/ is two floors below it).
_CHECKOUT = pathlib.Path(__file__).resolve().parents[2]


def _config_path(arg: str) -> str:
    """``--config=experiments/configs/fast.py`` also works outside the source checkout's
    root: a relative path that does not exist is looked up from that root."""
    if not arg.startswith("--config="):
        return arg
    path, sep, extra = arg[len("--config="):].partition(":")
    cand = _CHECKOUT / path
    if not pathlib.Path(path).exists() and not pathlib.Path(path).is_absolute() and cand.is_file():
        return f"--config={cand}{sep}{extra}"
    return arg


def config_flags_for(prog: str, argv: list[str]) -> flags.FlagValues:
    """New flag values holding ``--config`` (the :mod:`pulse_jax.cli.config` file, its fields
    overridable as ``--config.FIELD=VALUE``) for command ``prog``; an unknown field is a
    :class:`UsageError`."""
    from ml_collections import config_flags
    from pulse_jax.cli import config as default_config
    fv = flags.FlagValues()
    try:
        config_flags.DEFINE_config_file(
            "config", default_config.__file__, "Config file (a .py with get_config()); "
            "override fields with --config.FIELD=VALUE.", flag_values=fv, lock_config=True,
            sys_argv=[prog, *argv])
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # an unknown field
        bad = [a for a in argv if a.startswith("--config.")]
        raise UsageError(f"bad config override among {bad}: no such field {e}; "
                         "--print_config lists the fields") from None
    return fv


def resolved_config(fv: flags.FlagValues, shorthands: dict[str, str]):
    """The config of parsed flags ``fv``, with the ``shorthands`` (flag -> config field)
    that were given written over their fields."""
    try:
        config = fv["config"].value.copy_and_resolve_references()
    except (OSError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise UsageError(f"cannot load the config: {e}") from None
    with config.unlocked():
        for name, field in shorthands.items():
            if fv[name].value is not None:
                config[field] = fv[name].value
    return config


def _flags(argv: list[str]) -> flags.FlagValues:
    fv = config_flags_for("pulse-jax upsample", argv)
    flags.DEFINE_string("input_dir", None, "LR faces: a folder, a glob or a list file "
                        "(= --config.input_dir).", flag_values=fv)
    flags.DEFINE_string("output_dir", None, "Output folder (= --config.output_dir).",
                        flag_values=fv)
    flags.DEFINE_string("checkpoint", None, "Generator checkpoint: a folder, ffhq1024 or "
                        "default (= --config.checkpoint).", flag_values=fv)
    flags.DEFINE_integer("seed", None, "Random seed (= --config.seed).", flag_values=fv)
    flags.DEFINE_bool("align", None, "input_dir holds photos: align every face, upsample it "
                      "and paste it back (= --config.align; needs the align extra).",
                      flag_values=fv)
    flags.DEFINE_integer("upscale", None, "with --align: output photos this many times larger, "
                         "the background by Lanczos, every replaced face by PULSE "
                         "(= --config.align_upscale; default 1: the input's size).",
                         flag_values=fv)
    flags.DEFINE_string("faces", None, "with --align: the face indices to replace in every "
                        "photo, e.g. 0,2, as photos/manifest.jsonl numbers them (default: "
                        "every face the CNN detector confirms; = --config.align_faces).",
                        flag_values=fv)
    flags.DEFINE_bool("replace_large_faces", None, "with --align: also replace faces whose "
                      "crop already covers the generator's resolution (= "
                      "--config.align_replace_large_faces).", flag_values=fv)
    flags.DEFINE_bool("print_config", False, "Print the resolved config and exit.",
                      flag_values=fv)
    return fv


def generator_of(config, log: Callable[[str], None]):
    """The generator ``config.checkpoint`` names, and its folder."""
    from pulse_jax import weights
    try:
        path = weights.resolve_checkpoint(config.checkpoint, config.cache_dir, log)
    except weights.CheckpointError as e:  # says how to get the weights
        raise UsageError(str(e)) from None
    try:
        gen = weights.load_generator(path)
    except (weights.CheckpointError, OSError, ValueError) as e:
        raise UsageError(f"cannot load checkpoint {path}: {e}") from None
    log(f"pulse-jax: generator {path}")
    return gen, path


def _face_rules(config):
    """The :class:`~pulse_jax.align.FaceRules` of a config's ``align_*`` fields."""
    from pulse_jax.align import rules
    return rules.FaceRules(lr_size=int(config.align_lr_size) or rules.AUTO,
                           replace_large_faces=bool(config.align_replace_large_faces),
                           verify=bool(config.align_verify),
                           faces=rules.parse_faces(str(config.align_faces)))


def upsample(config, log: Callable[[str], None] = common.log) -> int:
    """Runs ``pulse-jax upsample`` for a resolved :mod:`pulse_jax.cli.config` config;
    returns the exit status. Raises :class:`UsageError` for usage/config/weights problems."""
    from pulse_jax.batch import multihost
    from pulse_jax.cli import config as run_config
    try:
        search_config, options = run_config.split(config)
    except (ValueError, TypeError) as e:
        raise UsageError(f"invalid config: {e}") from None
    if not config.align and (int(config.align_upscale) != 1 or str(config.align_faces)
                             or config.align_replace_large_faces):
        raise UsageError("--upscale, --faces and --replace_large_faces work on photos: add "
                         "--align (input_dir then holds photos, not LR faces)")
    try:
        face_rules = _face_rules(config)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if int(config.align_upscale) < 1:
        raise UsageError(f"--upscale must be 1 or more, got {config.align_upscale}")
    if multihost.distributed_requested(config.distributed):
        try:
            multihost.initialize(config.coordinator_address, config.num_processes,
                                 config.process_id)
        except ValueError as e:
            raise UsageError(str(e)) from None
    gen, path = generator_of(config, log)
    from pulse_jax import align, batch, images, weights
    try:
        if config.align:
            return align.upsample_photos(
                gen, config.input_dir, config.output_dir, search_config, options,
                upscale=int(config.align_upscale), rules=face_rules,
                checkpoint_manifest=weights.read_manifest(path),
                num_landmarks=int(config.align_landmarks),
                detect_options={"min_face_px": float(config.align_min_face_px),
                                "min_score": float(config.align_min_score)},
                log=log).exit_status()
        summary = batch.run_batch(gen, config.input_dir, config.output_dir, search_config,
                                  options, log=log)
    except images.ImageError as e:
        raise UsageError(f"no inputs: {e}") from None
    except (ImportError, ValueError) as e:
        raise UsageError(str(e)) from None
    log(summary.format())
    return batch.exit_status(summary)


def command(argv: Sequence[str]) -> int:
    """``pulse-jax upsample ARGV...``: parses the flags into a config and runs it."""
    argv = [_config_path(a) for a in argv]
    fv = _flags(argv)
    rest = common.parse(fv, "pulse-jax upsample", argv, "[flags]")
    if rest:
        raise UsageError(f"unexpected arguments {rest}; flags look like --input_dir=DIR or "
                         "--config.search.steps=200 (see --help)")
    config = resolved_config(fv, _SHORTHANDS)
    if fv["print_config"].value:
        print(config.to_json_best_effort(indent=2, sort_keys=True), flush=True)
        return exit_codes.OK
    return upsample(config)
