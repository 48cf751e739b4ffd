r"""The ``pulse-jax`` command.

Subcommands::

  pulse-jax upsample --input_dir=input --output_dir=runs [--checkpoint=DIR]
                     [--config=experiments/configs/fast.py] [--config.search.steps=200 ...]
                     [--print_config]
      Upsample faces (exactly the flags of ``python -m experiments.run``; see its doc for the
      exit status: 0 all within eps, 1 bad input, 2 usage/config/weights, 3 some missed eps).

  pulse-jax convert --synthesis=synthesis.pt [--mapping=mapping.pt]
                    [--gaussian_fit=gaussian_fit.pt] [--output=DIR]
  pulse-jax convert --nvidia=karras2019stylegan-ffhq-1024x1024.pkl [--gaussian_fit=...]
                    [--output=DIR]
      Import PULSE's PyTorch files or NVIDIA's pickle (no PyTorch/TensorFlow needed, no code
      from the files run) and save a pulse-jax checkpoint folder, by default the cache
      location the runner looks in (``$PULSE_JAX_HOME`` or ``~/.cache/pulse_jax``, then
      ``checkpoints/ffhq1024``). Without a Gaussian fit file, the fit is computed from
      ``--fit_samples`` (1,000,000) samples of the mapping network. The source files'
      SHA-256 are recorded in the checkpoint's manifest.

  pulse-jax info DIR [--arrays]
      Print a checkpoint's manifest (config, checksums, sources).

  pulse-jax merge OUTPUT_DIR
      Merge the per-process manifest parts of a multi-process run into manifest.jsonl
      (process 0 does it at the end of a run; this is for runs whose processes did not share
      the folder or were stopped). Idempotent.

Exit status 2 for usage errors and unreadable weights, with a message and no traceback.
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
from typing import Optional, Sequence

from pulse_jax import exit_codes


_USAGE = """\
usage: pulse-jax COMMAND [flags]

commands:
  upsample   upsample LR faces (flags: --input_dir --output_dir --checkpoint --config
             --config.FIELD=VALUE --print_config; `pulse-jax upsample --help` lists them)
  convert    convert official weights into a pulse-jax checkpoint
  info       print a checkpoint's manifest
  merge      merge the manifest parts of a multi-process run
"""


def _err(msg: str) -> None:
    print(f"pulse-jax: {msg}", file=sys.stderr, flush=True)


def _convert(argv: Sequence[str]) -> int:
    from experiments import run as runner

    from absl import flags as absl_flags

    # absl flags in their own FlagValues: `pulse-jax convert` and `upsample` share a process.
    fv = absl_flags.FlagValues()
    define = functools.partial
    S = define(absl_flags.DEFINE_string, flag_values=fv)
    S("synthesis", None, "PULSE's synthesis.pt (give this or --nvidia)")
    S("nvidia", None, "NVIDIA's karras2019stylegan-ffhq-1024x1024.pkl (or --synthesis)")
    S("mapping", None, "PULSE's mapping.pt (only to compute a Gaussian fit)")
    S("gaussian_fit", None, "PULSE's gaussian_fit.pt")
    S("network", "Gs", "which network of NVIDIA's pickle (G, D or Gs)")
    S("output", None, f"checkpoint folder (default: the cache, {runner.ffhq_checkpoint()})")
    absl_flags.DEFINE_integer("fit_samples", 1_000_000, "mapping samples for a computed "
                              "Gaussian fit (reference: 1,000,000)", flag_values=fv)
    absl_flags.DEFINE_integer("fit_seed", 0, "PRNG seed of the fit's samples", flag_values=fv)
    absl_flags.DEFINE_enum("dtype", "float32", ["float32", "float16"],
                           "storage dtype of the parameters", flag_values=fv)
    absl_flags.DEFINE_bool("overwrite", False, "replace an existing checkpoint", flag_values=fv)
    if any(a in ("-h", "--help", "-help") for a in argv):
        print("usage: pulse-jax convert (--synthesis=synthesis.pt | --nvidia=FILE.pkl) "
              "[flags]\n\n" + fv.get_help())
        return 0
    try:
        rest = fv(["pulse-jax convert", *argv])
    except absl_flags.Error as e:
        _err(f"convert: {e}")
        return exit_codes.USAGE
    if len(rest) > 1:
        _err(f"convert: unexpected arguments {rest[1:]}")
        return exit_codes.USAGE
    if bool(fv.synthesis) == bool(fv.nvidia):
        _err("convert: give exactly one of --synthesis=synthesis.pt or --nvidia=FILE.pkl")
        return exit_codes.USAGE
    args = fv

    import jax
    from pulse_jax import weights

    out = pathlib.Path(args.output).expanduser() if args.output else runner.ffhq_checkpoint()
    if out.exists() and not args.overwrite:
        _err(f"{out} exists; pass --overwrite to replace it")
        return exit_codes.USAGE
    sources = []
    try:
        if args.nvidia:
            gen = weights.import_nvidia(args.nvidia, network=args.network)
            sources.append(weights.source_record(args.nvidia, "nvidia_pickle"))
            if args.mapping:
                _err("--mapping is ignored with --nvidia (the pickle holds the mapping network)")
            if args.gaussian_fit:
                from pulse_jax.weights.torch_files import load_torch_file
                fit = load_torch_file(args.gaussian_fit)
                if not isinstance(fit, dict) or set(fit) != {"mean", "std"}:
                    raise ValueError(f"{args.gaussian_fit}: expected a dict with 'mean' and "
                                     "'std' (PULSE's gaussian_fit.pt)")
                gen = gen.replace_gaussian_fit(fit["mean"], fit["std"])
                sources.append(weights.source_record(args.gaussian_fit, "gaussian_fit"))
        else:
            gen = weights.import_pulse(args.synthesis, args.mapping, args.gaussian_fit)
            sources.append(weights.source_record(args.synthesis, "synthesis"))
            if args.mapping:
                sources.append(weights.source_record(args.mapping, "mapping"))
            if args.gaussian_fit:
                sources.append(weights.source_record(args.gaussian_fit, "gaussian_fit"))
    except FileNotFoundError as e:
        _err(f"file not found: {e.filename or e}")
        return exit_codes.USAGE
    except ImportError as e:
        _err(f"this importer is not available: {e}")
        return exit_codes.USAGE
    except (ValueError, KeyError, TypeError, OSError) as e:
        _err(f"cannot convert: {e}")
        return exit_codes.USAGE
    extra = {}
    if gen.gaussian_fit is None:
        if not gen.has_mapping:
            _err("no Gaussian fit: give --gaussian_fit=gaussian_fit.pt, or --mapping=mapping.pt "
                 "to compute one")
            return exit_codes.USAGE
        print(f"computing the Gaussian fit from {args.fit_samples:,} mapping samples "
              f"(seed {args.fit_seed}) ...", file=sys.stderr, flush=True)
        fit = weights.compute_gaussian_fit(gen.config, gen.params["mapping"],
                                           jax.random.PRNGKey(args.fit_seed),
                                           num_samples=args.fit_samples)
        gen = gen.replace_gaussian_fit(fit["mean"], fit["std"])
        extra["gaussian_fit"] = {"computed": True, "num_samples": args.fit_samples,
                                 "seed": args.fit_seed}
    weights.save_generator(gen, out, sources=sources, dtype=args.dtype, extra=extra,
                           overwrite=True)
    c = gen.config
    print(f"wrote {out}: {c.resolution}x{c.resolution} generator, {c.num_layers} layers, "
          f"D={c.dlatent_size}, mapping {'yes' if gen.has_mapping else 'no'}")
    return 0


def _info(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="pulse-jax info", description="Print a checkpoint's manifest.")
    p.add_argument("checkpoint", nargs="?", default=None,
                   help="checkpoint folder (default: the cache location)")
    p.add_argument("--arrays", action="store_true", help="also list every array's shape")
    args = p.parse_args(argv)
    from experiments import run as runner
    from pulse_jax import weights
    path = pathlib.Path(args.checkpoint).expanduser() if args.checkpoint else runner.ffhq_checkpoint()
    try:
        manifest = weights.read_manifest(path)
    except weights.CheckpointError as e:
        _err(str(e))
        return exit_codes.USAGE
    if not args.arrays:
        arrays = manifest.pop("arrays", {})
        manifest["arrays"] = f"{len(arrays)} arrays (--arrays to list them)"
    print(json.dumps(manifest, indent=2))
    return 0


def _merge(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="pulse-jax merge",
                                description="Merge manifest.part*.jsonl into manifest.jsonl.")
    p.add_argument("output_dir")
    args = p.parse_args(argv)
    from pulse_jax import batch
    d = pathlib.Path(args.output_dir)
    if not d.is_dir():
        _err(f"{d}: no such folder")
        return exit_codes.USAGE
    try:
        target = batch.merge_manifests(d)
    except ValueError as e:
        _err(str(e))
        return exit_codes.USAGE
    print(f"{target}: {len(batch.read_records(d))} records")
    return 0


def _config_path(arg: str) -> str:
    """``--config=experiments/configs/fast.py`` (or ``--config=fast.py``) also works outside
    the repository: a path that does not exist is looked up among the installed configs."""
    if not arg.startswith("--config="):
        return arg
    value = arg[len("--config="):]
    path, sep, extra = value.partition(":")
    if pathlib.Path(path).exists():
        return arg
    configs = pathlib.Path(__file__).resolve().parent / "configs"
    for cand in (configs.parent.parent / path, configs / pathlib.Path(path).name):
        if cand.is_file():
            return f"--config={cand}{sep}{extra}"
    return arg


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The ``pulse-jax`` console script."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(_USAGE, end="")
        sys.exit(0 if len(argv) >= 2 else exit_codes.USAGE)
    cmd, rest = argv[1], argv[2:]
    if cmd == "upsample":
        # ml_collections reads config overrides from sys.argv when the flags are defined.
        sys.argv = [f"{pathlib.Path(argv[0]).name} upsample", *map(_config_path, rest)]
        from experiments import run as runner
        runner.cli_main(sys.argv)
        return
    commands = {"convert": _convert, "info": _info, "merge": _merge}
    if cmd not in commands:
        _err(f"unknown command {cmd!r}\n{_USAGE}")
        sys.exit(exit_codes.USAGE)
    try:
        sys.exit(commands[cmd](rest))
    except KeyboardInterrupt:
        _err("interrupted")
        sys.exit(exit_codes.INTERRUPTED)


if __name__ == "__main__":
    main()
