r"""``pulse-jax convert``: PULSE's PyTorch files or NVIDIA's pickle into a checkpoint folder.

No PyTorch or TensorFlow is needed and no code from the files runs
(:mod:`pulse_jax.weights`); without a Gaussian fit file the fit is computed from
``--fit_samples`` mapping samples. The default folder is the cache's ``ffhq1024``.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

from absl import flags

from pulse_jax import exit_codes
from pulse_jax.cli import common
from pulse_jax.cli.common import UsageError

__all__ = ["command"]


def _flags() -> flags.FlagValues:
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
            common.err("--mapping is ignored with --nvidia (the pickle holds the mapping "
                       "network)")
        if fv.gaussian_fit:  # read and checked as import_pulse reads PULSE's fit
            fit = weights.read_gaussian_fit(fv.gaussian_fit, gen.config.dlatent_size)
            gen = gen.replace_gaussian_fit(**fit)
            sources.append(weights.source_record(fv.gaussian_fit, "gaussian_fit"))
        return gen, sources
    gen = weights.import_pulse(fv.synthesis, fv.mapping, fv.gaussian_fit)
    roles = (("synthesis", fv.synthesis), ("mapping", fv.mapping),
             ("gaussian_fit", fv.gaussian_fit))
    return gen, [weights.source_record(path, role) for role, path in roles if path]


def _output(fv: flags.FlagValues) -> pathlib.Path:
    """The checkpoint folder to write, checked before a conversion of minutes: it is new, or
    ``--overwrite`` replaces a checkpoint (never another folder)."""
    from pulse_jax import weights
    from pulse_jax.weights.checkpoint import check_replaceable
    out = pathlib.Path(fv.output).expanduser() if fv.output else weights.ffhq_checkpoint()
    if out.exists() and not fv.overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    try:
        check_replaceable(out)
    except weights.CheckpointError as e:
        raise UsageError(str(e)) from None
    return out


def command(argv: Sequence[str]) -> int:
    """``pulse-jax convert ARGV...``; returns the exit status."""
    fv = _flags()
    rest = common.parse(fv, "pulse-jax convert", argv,
                        "(--synthesis=synthesis.pt | --nvidia=FILE.pkl) [flags]")
    if rest:
        raise UsageError(f"convert: unexpected arguments {rest}")
    if bool(fv.synthesis) == bool(fv.nvidia):
        raise UsageError("convert: give exactly one of --synthesis=synthesis.pt or "
                         "--nvidia=FILE.pkl")
    from pulse_jax import stylegan
    out = _output(fv)
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
                             fit_seed=fv.fit_seed, dtype=fv.dtype, log=common.log)
    except ValueError as e:  # no fit and no mapping network to compute one
        raise UsageError(str(e)) from None
    c = gen.config
    print(f"wrote {out}: {c.resolution}x{c.resolution} generator, {c.num_layers} layers, "
          f"D={c.dlatent_size}, mapping {'yes' if gen.has_mapping else 'no'}")
    return exit_codes.OK
