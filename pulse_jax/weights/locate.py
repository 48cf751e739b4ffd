"""Where generator checkpoints are found: the cache, the shipped model, and what to do when
neither is there.

* The cache: ``{cache}/checkpoints/ffhq1024``, where ``pulse-jax convert`` puts NVIDIA's
  FFHQ 1024 model; ``cache`` is the ``cache_dir`` given, else ``$PULSE_JAX_HOME``, else
  ``~/.cache/pulse_jax``.
* The shipped model: ``pulse_jax/checkpoints/utkface64``, package data installed with
  pulse-jax, or ``$PULSE_JAX_DEFAULT_CHECKPOINT``; a small 64x64 face model that works
  offline.

:func:`resolve_checkpoint` applies the command line's rule for ``--checkpoint``; when the
checkpoint it names is missing, its :class:`CheckpointError` says how to get and convert
the official weights.
"""

from __future__ import annotations

import os
import pathlib
from typing import Callable, Optional

from pulse_jax.weights.checkpoint import CheckpointError

__all__ = ["DEFAULT_CHECKPOINT_ENV", "FFHQ_NAME", "HOME_ENV", "SHIPPED_NAME", "cache_home",
           "default_checkpoint_path", "ffhq_checkpoint", "how_to_get_weights",
           "resolve_checkpoint"]

HOME_ENV = "PULSE_JAX_HOME"
DEFAULT_CHECKPOINT_ENV = "PULSE_JAX_DEFAULT_CHECKPOINT"
FFHQ_NAME = "ffhq1024"     # --checkpoint=ffhq1024: the converted FFHQ model in the cache
SHIPPED_NAME = "default"   # --checkpoint=default: the shipped offline model


def cache_home(cache_dir: str = "") -> pathlib.Path:
    """``cache_dir``, else ``$PULSE_JAX_HOME``, else ``~/.cache/pulse_jax``."""
    home = cache_dir or os.environ.get(HOME_ENV) or "~/.cache/pulse_jax"
    return pathlib.Path(home).expanduser()


def ffhq_checkpoint(cache_dir: str = "") -> pathlib.Path:
    """Where ``pulse-jax convert`` puts the FFHQ 1024 checkpoint in the cache."""
    return cache_home(cache_dir) / "checkpoints" / FFHQ_NAME


def default_checkpoint_path() -> pathlib.Path:
    """Where the shipped default model lives: ``$PULSE_JAX_DEFAULT_CHECKPOINT`` if set, else
    ``checkpoints/utkface64`` inside the installed package (package data, so editable and
    non-editable installs both have it)."""
    env = os.environ.get(DEFAULT_CHECKPOINT_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path(__file__).resolve().parents[1] / "checkpoints" / "utkface64"


def how_to_get_weights(target: pathlib.Path) -> str:
    """The instructions given when no checkpoint is found at ``target``."""
    return f"""\
no generator checkpoint at {target}
(the default location; pass --checkpoint=DIR, or set ${HOME_ENV} or --config.cache_dir).

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


def resolve_checkpoint(choice: str = "", cache_dir: str = "",
                       log: Optional[Callable[[str], None]] = None) -> pathlib.Path:
    """The checkpoint folder that ``choice`` names.

    ``choice`` is a folder; ``"ffhq1024"``, the converted FFHQ model in the cache;
    ``"default"``, the small model shipped with pulse-jax; or ``""``: the FFHQ model if it
    is in the cache, else the shipped one (``log`` is told). CheckpointError, with
    :func:`how_to_get_weights`, when the FFHQ model or the shipped one is missing; a folder
    given by path is returned as is (loading it reports what is wrong).
    """
    ffhq = ffhq_checkpoint(cache_dir)
    choice = str(choice)
    if choice == "" and not ffhq.exists():
        choice = SHIPPED_NAME
        if log is not None:
            log(f"pulse-jax: no FFHQ checkpoint at {ffhq}; using the small offline model "
                f"shipped with pulse-jax ({default_checkpoint_path()}, 64x64). For PULSE's "
                "real results convert the FFHQ weights: see checkpoints/README.md")
    if choice == SHIPPED_NAME:
        path = default_checkpoint_path()
        if not path.exists():
            raise CheckpointError(how_to_get_weights(ffhq) + "\n\n(The shipped offline model "
                                  f"is missing too: {path}.)")
        return path
    if choice in ("", FFHQ_NAME):
        if not ffhq.exists():
            raise CheckpointError(how_to_get_weights(ffhq))
        return ffhq
    return pathlib.Path(choice).expanduser()
