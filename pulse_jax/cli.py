r"""The ``pulse-jax`` command: ``upsample``, ``convert``, ``info`` and ``merge``.

::

  pulse-jax upsample --input_dir=input --output_dir=runs [--checkpoint=DIR]
                     [--config=experiments/configs/fast.py] [--config.search.steps=200 ...]
                     [--seed=N] [--print_config]
  pulse-jax align --input_dir=photos --output_dir=aligned [--lr_size=32] [--checkpoint=DIR]
                  [--landmarks=5|68] [--template=auto|ffhq|checkpoint]
  pulse-jax convert (--synthesis=synthesis.pt [--mapping=mapping.pt] | --nvidia=FILE.pkl)
                    [--gaussian_fit=gaussian_fit.pt] [--output=DIR]
  pulse-jax info [DIR] [--arrays]
  pulse-jax merge OUTPUT_DIR

``upsample`` runs :func:`pulse_jax.batch.run_batch` with the config of
:mod:`pulse_jax.run_config` (``--config.FIELD=VALUE`` overrides a field; ``--input_dir``,
``--output_dir``, ``--checkpoint`` and ``--seed`` are shorthands that win over them). The
weights are ``--checkpoint`` (:func:`pulse_jax.weights.resolve_checkpoint`: a folder,
``ffhq1024`` in the cache, ``default`` for the shipped model, or empty for the first of the
two that exists). ``--config.distributed=True`` (or ``PULSE_JAX_DISTRIBUTED=1``) starts
``jax.distributed`` first (:mod:`pulse_jax.multihost`): every process runs the same command
and process 0 merges the manifests and reports on all faces.

``align`` (:mod:`pulse_jax.align`) detects every face in every photo, crops it the way the
generator's training faces were framed and writes the crop, its LR version (``lr/``, ready
for ``upsample``) and a manifest line with the transform that ``paste_back`` inverts.
``convert`` imports PULSE's PyTorch files or NVIDIA's pickle (no PyTorch or TensorFlow
needed, no code from the files run) into a checkpoint folder, by default the cache's
``ffhq1024``; without a Gaussian fit file the fit is computed from ``--fit_samples``
mapping samples. ``info`` prints a checkpoint's manifest. ``merge`` folds the manifest parts
of a multi-process run into ``manifest.jsonl`` (idempotent).

Exit status (:mod:`pulse_jax.exit_codes`): 0 every face within eps; 1 a bad input or a
failed search (named on stderr and in the manifest; the other faces are done); 2 a usage,
config or weights problem (nothing was run; a message, no traceback); 3 some face missed
eps; 4 the output folder is in use by another run (named; nothing was run); 130
interrupted (rerun the same command to resume).
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Callable, Optional, Sequence

from absl import flags
from absl import logging as absl_logging

from pulse_jax import exit_codes, folder_lock

__all__ = ["UsageError", "main", "run", "upsample", "version"]

_USAGE = """\
usage: pulse-jax COMMAND [flags]

commands:
  upsample   upsample LR faces (`pulse-jax upsample --help` lists the flags)
  align      find the faces in photos and crop them as the generator's training faces
             (needs the align extra: pip install "pulse-jax[align]")
  convert    convert official weights into a pulse-jax checkpoint
  info       print a checkpoint's manifest
  merge      merge the manifest parts of a multi-process run
  version    print the versions of pulse-jax, jax and jaxlib (also --version)
"""
_HELP = ("-h", "--help", "-help", "--helpshort")
_SHORTHANDS = ("input_dir", "output_dir", "checkpoint", "seed", "align")


class UsageError(Exception):
    """A problem reported in one message with exit status 2 (no traceback)."""


def _err(msg: str) -> None:
    print(f"pulse-jax: {msg}", file=sys.stderr, flush=True)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parse(fv: flags.FlagValues, prog: str, argv: Sequence[str], usage: str) -> list[str]:
    """Parses ``argv`` into ``fv``; returns the positional arguments. ``--help`` prints the
    usage and exits 0; a bad flag is a :class:`UsageError`."""
    if any(a in _HELP for a in argv):
        print(f"usage: {prog} {usage}\n\n{fv.get_help()}")
        sys.exit(exit_codes.OK)
    try:
        return fv([prog, *argv])[1:]
    except flags.Error as e:
        raise UsageError(f"{prog}: {e} (see --help)") from None


# --------------------------------------------------------------------------------------------
# upsample
# --------------------------------------------------------------------------------------------


def _config_path(arg: str) -> str:
    """``--config=experiments/configs/fast.py`` also works outside the source checkout's
    root: a relative path that does not exist is looked up from that root."""
    if not arg.startswith("--config="):
        return arg
    path, sep, extra = arg[len("--config="):].partition(":")
    cand = pathlib.Path(__file__).resolve().parents[1] / path
    if not pathlib.Path(path).exists() and not pathlib.Path(path).is_absolute() and cand.is_file():
        return f"--config={cand}{sep}{extra}"
    return arg


def _upsample_flags(argv: list[str]) -> flags.FlagValues:
    from ml_collections import config_flags
    from pulse_jax import run_config
    fv = flags.FlagValues()
    try:
        config_flags.DEFINE_config_file(
            "config", run_config.__file__, "Config file (a .py with get_config()); override "
            "fields with --config.FIELD=VALUE.", flag_values=fv, lock_config=True,
            sys_argv=["pulse-jax upsample", *argv])
    except (AttributeError, KeyError, TypeError, ValueError) as e:  # an unknown field
        bad = [a for a in argv if a.startswith("--config.")]
        raise UsageError(f"bad config override among {bad}: no such field {e}; "
                         "--print_config lists the fields") from None
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
    flags.DEFINE_bool("print_config", False, "Print the resolved config and exit.",
                      flag_values=fv)
    return fv


def upsample(config, log: Callable[[str], None] = _log) -> int:
    """Runs ``pulse-jax upsample`` for a resolved :mod:`pulse_jax.run_config` config;
    returns the exit status. Raises :class:`UsageError` for usage/config/weights problems."""
    from pulse_jax import multihost, run_config
    try:
        search_config, options = run_config.split(config)
    except (ValueError, TypeError) as e:
        raise UsageError(f"invalid config: {e}") from None
    if multihost.distributed_requested(config.distributed):
        try:
            multihost.initialize(config.coordinator_address, config.num_processes,
                                 config.process_id)
        except ValueError as e:
            raise UsageError(str(e)) from None
    from pulse_jax import batch, images, weights
    try:
        path = weights.resolve_checkpoint(config.checkpoint, config.cache_dir, log)
    except weights.CheckpointError as e:  # says how to get the weights
        raise UsageError(str(e)) from None
    try:
        gen = weights.load_generator(path)
    except (weights.CheckpointError, OSError, ValueError) as e:
        raise UsageError(f"cannot load checkpoint {path}: {e}") from None
    log(f"pulse-jax: generator {path}")
    inputs, aligned = config.input_dir, None
    try:
        if config.align:
            aligned = _align_photos(config, gen, path, log)
            inputs = str(pathlib.Path(config.output_dir) / "aligned" / "lr")
        summary = batch.run_batch(gen, inputs, config.output_dir, search_config, options,
                                  log=log)
    except images.ImageError as e:
        raise UsageError(f"no inputs: {e}") from None
    except (ImportError, ValueError) as e:
        raise UsageError(str(e)) from None
    log(summary.format())
    status = batch.exit_status(summary)
    if aligned is not None:
        from pulse_jax.align import pipeline
        log(pipeline.paste_results(config.output_dir, log).format())
        if aligned.errors and status == exit_codes.OK:
            status = exit_codes.BAD_INPUT
    return status


def _align_photos(config, gen, path: pathlib.Path, log: Callable[[str], None]):
    """``--align``: the photos of ``config.input_dir`` aligned into ``output_dir/aligned``."""
    from pulse_jax import weights
    from pulse_jax.align import pipeline
    lr_size = int(config.align_lr_size) or pipeline.default_lr_size(gen.resolution)
    summary = pipeline.align_photos(config.input_dir, config.output_dir, gen.resolution,
                                    lr_size, weights.read_manifest(path),
                                    int(config.align_landmarks), log)
    log(summary.format())
    if not summary.faces:
        raise ValueError(f"--align: no face could be aligned in {config.input_dir}")
    return summary


def _upsample(argv: Sequence[str]) -> int:
    argv = [_config_path(a) for a in argv]
    fv = _upsample_flags(argv)
    rest = _parse(fv, "pulse-jax upsample", argv, "[flags]")
    if rest:
        raise UsageError(f"unexpected arguments {rest}; flags look like --input_dir=DIR or "
                         "--config.search.steps=200 (see --help)")
    try:
        config = fv["config"].value.copy_and_resolve_references()
    except (OSError, AttributeError, KeyError, TypeError, ValueError) as e:
        raise UsageError(f"cannot load the config: {e}") from None
    with config.unlocked():
        for name in _SHORTHANDS:
            if fv[name].value is not None:
                config[name] = fv[name].value
    if fv["print_config"].value:
        print(config.to_json_best_effort(indent=2, sort_keys=True), flush=True)
        return exit_codes.OK
    return upsample(config)


# --------------------------------------------------------------------------------------------
# convert, info, merge
# --------------------------------------------------------------------------------------------


def _convert_flags() -> flags.FlagValues:
    from pulse_jax import weights
    fv = flags.FlagValues()
    for name, help_ in (
            ("synthesis", "PULSE's synthesis.pt (give this or --nvidia)"),
            ("nvidia", "an NVIDIA network pickle: StyleGAN v1 TensorFlow "
                       "(karras2019stylegan-ffhq-1024x1024.pkl) or StyleGAN2-ADA PyTorch "
                       "(or --synthesis)"),
            ("mapping", "PULSE's mapping.pt (only to compute a Gaussian fit)"),
            ("gaussian_fit", "PULSE's gaussian_fit.pt"),
            ("output", f"checkpoint folder (default: the cache, {weights.ffhq_checkpoint()})")):
        flags.DEFINE_string(name, None, help_, flag_values=fv)
    flags.DEFINE_string("network", "", "which network of NVIDIA's pickle (default: Gs of a "
                        "TensorFlow pickle, G_ema of a StyleGAN2-ADA one)", flag_values=fv)
    flags.DEFINE_integer("fit_samples", 1_000_000, "mapping samples for a computed Gaussian "
                         "fit (reference: 1,000,000)", flag_values=fv)
    flags.DEFINE_integer("fit_seed", 0, "PRNG seed of the fit's samples", flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", ["float32", "float16"],
                      "storage dtype of the parameters", flag_values=fv)
    flags.DEFINE_bool("overwrite", False, "replace an existing checkpoint", flag_values=fv)
    return fv


def _import(fv: flags.FlagValues):
    """The generator the convert flags name, and the source records of its files."""
    from pulse_jax import weights
    if fv.nvidia:
        gen = weights.import_nvidia(fv.nvidia, network=fv.network or None)
        sources = [weights.source_record(fv.nvidia, "nvidia_pickle")]
        if fv.mapping:
            _err("--mapping is ignored with --nvidia (the pickle holds the mapping network)")
        if fv.gaussian_fit:
            from pulse_jax.weights.torch_files import load_torch_file
            fit = load_torch_file(fv.gaussian_fit)
            if not isinstance(fit, dict) or set(fit) != {"mean", "std"}:
                raise ValueError(f"{fv.gaussian_fit}: expected a dict with 'mean' and 'std' "
                                 "(PULSE's gaussian_fit.pt)")
            gen = gen.replace_gaussian_fit(fit["mean"], fit["std"])
            sources.append(weights.source_record(fv.gaussian_fit, "gaussian_fit"))
        return gen, sources
    gen = weights.import_pulse(fv.synthesis, fv.mapping, fv.gaussian_fit)
    roles = (("synthesis", fv.synthesis), ("mapping", fv.mapping),
             ("gaussian_fit", fv.gaussian_fit))
    return gen, [weights.source_record(path, role) for role, path in roles if path]


def _convert(argv: Sequence[str]) -> int:
    fv = _convert_flags()
    rest = _parse(fv, "pulse-jax convert", argv,
                  "(--synthesis=synthesis.pt | --nvidia=FILE.pkl) [flags]")
    if rest:
        raise UsageError(f"convert: unexpected arguments {rest}")
    if bool(fv.synthesis) == bool(fv.nvidia):
        raise UsageError("convert: give exactly one of --synthesis=synthesis.pt or "
                         "--nvidia=FILE.pkl")
    from pulse_jax import stylegan, weights
    out = pathlib.Path(fv.output).expanduser() if fv.output else weights.ffhq_checkpoint()
    if out.exists() and not fv.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    from pulse_jax.weights.checkpoint import check_replaceable
    try:  # --overwrite replaces only a checkpoint; said before a conversion of minutes
        check_replaceable(out)
    except weights.CheckpointError as e:
        raise UsageError(str(e)) from None
    try:
        gen, sources = _import(fv)
    except FileNotFoundError as e:
        raise UsageError(f"file not found: {e.filename or e}") from None
    except ImportError as e:
        raise UsageError(f"this importer is not available: {e}") from None
    except (ValueError, KeyError, TypeError, OSError) as e:
        raise UsageError(f"cannot convert: {e}") from None
    if not fv.output and gen.config.family != stylegan.FAMILY:
        raise UsageError("convert: a StyleGAN2 pickle needs --output=FOLDER (the default "
                         "folder is that of NVIDIA's FFHQ StyleGAN v1)")
    from pulse_jax.weights.fetch import save_converted
    try:
        gen = save_converted(gen, out, sources, fit_samples=fv.fit_samples,
                             fit_seed=fv.fit_seed, dtype=fv.dtype, log=_log)
    except ValueError as e:  # no fit and no mapping network to compute one
        raise UsageError(str(e)) from None
    c = gen.config
    print(f"wrote {out}: {c.resolution}x{c.resolution} generator, {c.num_layers} layers, "
          f"D={c.dlatent_size}, mapping {'yes' if gen.has_mapping else 'no'}")
    return exit_codes.OK


def _info(argv: Sequence[str]) -> int:
    fv = flags.FlagValues()
    flags.DEFINE_bool("arrays", False, "also list every array's shape", flag_values=fv)
    rest = _parse(fv, "pulse-jax info", argv, "[CHECKPOINT_DIR] [--arrays]  (default: the "
                  "cache's ffhq1024)")
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


def _merge(argv: Sequence[str]) -> int:
    rest = _parse(flags.FlagValues(), "pulse-jax merge", argv, "OUTPUT_DIR")
    if len(rest) != 1:
        raise UsageError(f"merge: give one output folder, got {rest}")
    from pulse_jax import manifest
    d = pathlib.Path(rest[0])
    if not d.is_dir():
        raise UsageError(f"{d}: no such folder")
    try:
        target = manifest.merge_manifests(d)
    except ValueError as e:
        raise UsageError(str(e)) from None
    print(f"{target}: {len(manifest.read_records(d))} records")
    return exit_codes.OK


def _align(argv: Sequence[str]) -> int:
    from pulse_jax.align.command import align_main
    return align_main(list(argv))


_COMMANDS = {"upsample": _upsample, "align": _align, "convert": _convert, "info": _info,
             "merge": _merge}


def version() -> str:
    """``pulse-jax X (jax Y, jaxlib Z, Python V)``, the installed versions."""
    from importlib import metadata

    def of(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    py = ".".join(map(str, sys.version_info[:3]))
    return f"pulse-jax {of('pulse-jax')} (jax {of('jax')}, jaxlib {of('jaxlib')}, Python {py})"


def run(args: Sequence[str]) -> int:
    """Runs ``pulse-jax ARGS...`` in this process and returns its exit status, for notebooks
    and scripts: ``run(["convert", "--nvidia=ffhq.pkl"])``. Messages go to stderr."""
    args = list(args)
    if not args or args[0] in ("-h", "--help", "help"):
        print(_USAGE, end="")
        return exit_codes.OK if args else exit_codes.USAGE
    if args[0] in ("--version", "version"):
        print(version())
        return exit_codes.OK
    cmd, rest = args[0], args[1:]
    if cmd not in _COMMANDS:
        _err(f"unknown command {cmd!r}\n{_USAGE}")
        return exit_codes.USAGE
    absl_logging.set_verbosity(absl_logging.WARNING)  # hide JAX's backend chatter
    try:
        return _COMMANDS[cmd](rest)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except UsageError as e:
        _err(str(e))
        return exit_codes.USAGE
    except folder_lock.OutputBusyError as e:
        _err(str(e))
        return exit_codes.BUSY
    except KeyboardInterrupt:
        _err("interrupted; rerun the same command to resume")
        return exit_codes.INTERRUPTED


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The ``pulse-jax`` console script: ``argv`` (default ``sys.argv``) is the program name
    and :func:`run`'s arguments; exits with the status."""
    argv = list(sys.argv if argv is None else argv)
    sys.exit(run(argv[1:]))


if __name__ == "__main__":
    main()
