r"""Upsample a folder of low-resolution faces with PULSE.

Usage (from the repository root, or anywhere once installed)::

  python -m experiments.run --config=experiments/configs/default.py \
      --config.input_dir=input --config.output_dir=runs --checkpoint=ckpt/ffhq1024
  python -m experiments.run --config=experiments/configs/fast.py \
      --input_dir=input --config.search.steps=200 --config.search.restarts=4
  python -m experiments.run --config=experiments/configs/default.py --print_config

``pulse-jax upsample ...`` takes exactly the same flags. ``--input_dir``, ``--output_dir``,
``--checkpoint`` and ``--seed`` are shorthands for the config fields of the same name (they
win over ``--config.*``).

Exit status: 0 every face within eps; 1 some input was bad (or a search raised): it is
named on stderr and recorded in the manifest, the other faces are done; 2 a usage,
configuration or weights problem (nothing was run); 3 every input was processed but some
face missed eps (its HR is still written unless ``write_failures=False``). With several
processes, process 0's status covers all faces. Output files and the manifest are described
in ``pulse_jax/batch.py``.

Weights: ``--checkpoint`` (a folder written by ``pulse-jax convert`` or
``pulse_jax.save_generator``); without it, ``{cache_dir}/checkpoints/ffhq1024`` where
``cache_dir`` is ``--config.cache_dir``, else ``$PULSE_JAX_HOME``, else
``~/.cache/pulse_jax``. If nothing is there, the command explains how to get and convert the
official weights and exits with status 2.

Many hosts: ``--config.distributed=True`` (or ``PULSE_JAX_DISTRIBUTED=1``) calls
``jax.distributed.initialize`` (auto-detected on TPU pods and SLURM, or give
``--config.coordinator_address=host:port --config.num_processes=N --config.process_id=K``).
Every process runs the same command; each does the faces with ``face_id % N == K``, writes
``manifest.partKofN.jsonl``, and process 0 merges the parts into ``manifest.jsonl``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import sys
from typing import Optional, Sequence

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from pulse_jax import exit_codes

_CONFIG_DIR = pathlib.Path(__file__).resolve().parent / "configs"

try:
    # ml_collections reads the --config.FIELD=VALUE overrides in sys.argv right here.
    _CONFIG = config_flags.DEFINE_config_file(
        "config", str(_CONFIG_DIR / "default.py"),
        "Config file (a .py with get_config()); override fields with --config.FIELD=VALUE.",
        lock_config=True)
except (AttributeError, KeyError, TypeError, ValueError) as _e:  # an unknown field
    _bad = [a for a in sys.argv[1:] if a.startswith("--config.")]
    print(f"pulse-jax: bad config override among {_bad}: no such field {_e}; "
          "--print_config lists the fields", file=sys.stderr)
    sys.exit(2)
_INPUT_DIR = flags.DEFINE_string(
    "input_dir", None, "LR faces: a folder, a glob or a list file (= --config.input_dir).")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Output folder (= --config.output_dir).")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Generator checkpoint folder (= --config.checkpoint).")
_SEED = flags.DEFINE_integer("seed", None, "Random seed (= --config.seed).")
_PRINT_CONFIG = flags.DEFINE_bool(
    "print_config", False, "Print the resolved config (after all overrides) and exit.")

DEFAULT_CHECKPOINT_NAME = "ffhq1024"


class UsageError(Exception):
    """A problem to report in one message with exit status 2 (no traceback)."""


def _err(msg: str) -> None:
    print(f"pulse-jax: {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Stages
# --------------------------------------------------------------------------------------------


def resolve_config(config=None):
    """The config with the shorthand flags applied."""
    config = _CONFIG.value if config is None else config
    config = config.copy_and_resolve_references()
    with config.unlocked():
        for flag, field in ((_INPUT_DIR, "input_dir"), (_OUTPUT_DIR, "output_dir"),
                            (_CHECKPOINT, "checkpoint"), (_SEED, "seed")):
            if flag.value is not None:
                setattr(config, field, flag.value)
    return config


def cache_home(cache_dir: str = "") -> pathlib.Path:
    """``cache_dir``, else ``$PULSE_JAX_HOME``, else ``~/.cache/pulse_jax``."""
    home = cache_dir or os.environ.get("PULSE_JAX_HOME") or "~/.cache/pulse_jax"
    return pathlib.Path(home).expanduser()


def ffhq_checkpoint(cache_dir: str = "") -> pathlib.Path:
    """Where ``pulse-jax convert`` puts the FFHQ 1024 checkpoint in the cache (the offline
    default model is another one: ``pulse_jax.weights.default_checkpoint_path``)."""
    return cache_home(cache_dir) / "checkpoints" / DEFAULT_CHECKPOINT_NAME


def how_to_get_weights(target: pathlib.Path) -> str:
    """The instructions printed when no checkpoint is found."""
    return f"""\
no generator checkpoint at {target}
(the default location; pass --checkpoint=DIR, or set $PULSE_JAX_HOME or --config.cache_dir).

PULSE needs the pretrained StyleGAN (FFHQ, 1024x1024). Get ONE of these and convert it once:

 A) PULSE's PyTorch files: synthesis.pt (Google Drive id 1TCViX1YpQyRsklTVYEJwdbmK91vklCo8,
    https://drive.google.com/uc?id=1TCViX1YpQyRsklTVYEJwdbmK91vklCo8) and gaussian_fit.pt
    (committed in https://github.com/adamian98/pulse). Then:

      pulse-jax convert --synthesis=synthesis.pt --gaussian_fit=gaussian_fit.pt \\
          --output={target}

    (or --mapping=mapping.pt, Drive id 14R6iHGf5iuVx3DMNsACAl7eBr7Vdpd0k, instead of
    --gaussian_fit to recompute the fit from 1,000,000 mapping samples.)

 B) NVIDIA's StyleGAN v1 pickle karras2019stylegan-ffhq-1024x1024.pkl (linked from
    https://github.com/NVlabs/stylegan). Then:

      pulse-jax convert --nvidia=karras2019stylegan-ffhq-1024x1024.pkl --output={target}

    (the Gaussian fit is computed from 1,000,000 mapping samples; add
    --gaussian_fit=gaussian_fit.pt to use PULSE's instead.)

Neither conversion needs PyTorch or TensorFlow, and no code from the files is run.
`pulse-jax info {target}` shows what a checkpoint holds."""


def search_config(config):
    """The :class:`pulse_jax.search.SearchConfig` of ``config.search`` (ValueError if bad)."""
    from pulse_jax import search
    fields = {f.name for f in dataclasses.fields(search.SearchConfig)}
    d = dict(config.search)
    unknown = sorted(set(d) - fields)
    if unknown:
        raise UsageError(f"unknown search fields {unknown}; valid: {sorted(fields)}")
    if not d.get("num_latent_rows"):
        d["num_latent_rows"] = None
    try:
        return search.SearchConfig(**d)
    except (ValueError, TypeError) as e:
        raise UsageError(f"invalid search config: {e}") from None


def setup_distributed(config) -> None:
    """``jax.distributed.initialize`` when asked for (before any other JAX call)."""
    env = os.environ.get("PULSE_JAX_DISTRIBUTED", "").lower() in ("1", "true", "yes")
    if not (config.distributed or env):
        return
    import jax
    kwargs = {}
    if config.coordinator_address:
        kwargs["coordinator_address"] = config.coordinator_address
    if config.num_processes:
        kwargs["num_processes"] = int(config.num_processes)
    if config.process_id >= 0:
        kwargs["process_id"] = int(config.process_id)
    try:
        jax.distributed.initialize(**kwargs)
    except (RuntimeError, ValueError) as e:
        raise UsageError(f"jax.distributed.initialize({kwargs}) failed: {e}") from None


def load_weights(config, log=None):
    """The generator for ``config.checkpoint``, or a UsageError explaining how to get one.

    ``checkpoint`` is a folder, or ``"ffhq1024"`` (the converted FFHQ model in the cache,
    ``{cache}/checkpoints/ffhq1024``), or ``"default"`` (the small model shipped with
    pulse-jax), or ``""``: the FFHQ model if it is in the cache, else the shipped one.
    """
    from pulse_jax import weights
    ffhq = ffhq_checkpoint(config.cache_dir)
    choice = str(config.checkpoint)
    if choice == "" and not ffhq.exists():
        choice = "default"
        if log is not None:
            log(f"pulse-jax: no FFHQ checkpoint at {ffhq}; using the small offline model "
                f"shipped with pulse-jax ({weights.default_checkpoint_path()}, 64x64). For "
                "PULSE's real results convert the FFHQ weights: see checkpoints/README.md")
    if choice == "default":
        path = weights.default_checkpoint_path()
        if not path.exists():
            raise UsageError(how_to_get_weights(ffhq) + f"\n\n(The shipped offline model is "
                             f"missing too: {path}.)")
    else:
        path = ffhq if choice in ("", DEFAULT_CHECKPOINT_NAME) else pathlib.Path(choice).expanduser()
        if choice in ("", DEFAULT_CHECKPOINT_NAME) and not path.exists():
            raise UsageError(how_to_get_weights(path))
    try:
        gen = weights.load_generator(path)
    except (weights.CheckpointError, OSError, ValueError) as e:
        raise UsageError(f"cannot load checkpoint {path}: {e}") from None
    if gen.gaussian_fit is None:
        raise UsageError(f"checkpoint {path} has no Gaussian fit; convert it again with "
                         "--gaussian_fit=gaussian_fit.pt or with mapping weights")
    return gen, path


def run(config, log=None) -> int:
    """Everything after flag parsing; returns the exit status."""
    from pulse_jax import batch, images
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    scfg = search_config(config)
    for name in ("duplicates", "batch_size"):
        if int(config[name]) < 1:
            raise UsageError(f"{name} must be >= 1, got {config[name]}")
    setup_distributed(config)
    import jax
    gen, path = load_weights(config, log)
    try:
        paths = images.discover_inputs(config.input_dir)
    except images.ImageError as e:
        raise UsageError(f"no inputs: {e}") from None
    if jax.process_index() == 0:
        log(f"pulse-jax: {len(paths)} input file(s) from {config.input_dir} -> "
            f"{config.output_dir}; generator {path} ({gen.resolution}x{gen.resolution}); "
            f"{len(jax.local_devices())} local device(s) x {jax.process_count()} process(es)")
    try:
        summary = batch.run_batch(
            gen, paths, config.output_dir, scfg, seed=int(config.seed),
            batch_size=int(config.batch_size), devices=int(config.devices) or None,
            duplicates=int(config.duplicates), save_lr=bool(config.save_lr),
            save_contact_sheet=bool(config.save_contact_sheet),
            save_intermediate=bool(config.save_intermediate),
            write_failures=bool(config.write_failures),
            merge_timeout_s=float(config.merge_timeout_s),
            progress=bool(config.progress) and os.environ.get("TQDM_DISABLE", "") in ("", "0"),
            log=log)
    except ValueError as e:
        raise UsageError(str(e)) from None
    log(summary.format())
    return batch.exit_status(summary)


# --------------------------------------------------------------------------------------------
# absl entry
# --------------------------------------------------------------------------------------------


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        _err(f"unexpected arguments {list(argv[1:])}; flags look like --input_dir=DIR or "
             "--config.search.steps=200 (see --help)")
        sys.exit(exit_codes.USAGE)
    if not flags.FLAGS["verbosity"].present:
        absl_logging.set_verbosity(absl_logging.WARNING)  # hide JAX's backend chatter
    try:
        try:
            config = resolve_config()
        except (OSError, AttributeError, KeyError, TypeError, ValueError) as e:
            raise UsageError(f"cannot load the config: {e}") from None
        if _PRINT_CONFIG.value:
            print(config.to_json_best_effort(indent=2, sort_keys=True), flush=True)
            sys.exit(exit_codes.OK)
        status = run(config)
    except UsageError as e:
        _err(str(e))
        sys.exit(exit_codes.USAGE)
    except KeyboardInterrupt:
        _err("interrupted; rerun the same command to resume")
        sys.exit(exit_codes.INTERRUPTED)
    sys.exit(status)


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing, but a bad flag or override exits with status 2, no traceback."""
    if any(a in ("-h", "--help", "-help", "--helpshort") for a in argv[1:]):
        print(__doc__)
        print("Flags:\n" + flags.FLAGS.module_help(sys.modules[__name__]))
        print("\nConfig fields (--config.FIELD=VALUE): see --print_config; "
              "--helpfull lists every flag.")
        sys.exit(exit_codes.OK)
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        _err(f"{e}\n(see --help; config fields are set as --config.search.steps=200)")
        sys.exit(exit_codes.USAGE)


def cli_main(argv: Optional[list[str]] = None) -> None:
    """Run as a program: ``argv`` defaults to ``sys.argv``."""
    app.run(main, argv=argv, flags_parser=parse_flags)


if __name__ == "__main__":
    cli_main()
