"""``pulse-jax app [--host=127.0.0.1] [--port=7860] [--checkpoint=...]``: the local web app
(:mod:`pulse_jax.app`, the ``app`` extra), until Ctrl+C."""

from __future__ import annotations

import importlib.util
import signal
from typing import Sequence

from absl import flags

from pulse_jax import exit_codes
from pulse_jax.cli import common
from pulse_jax.cli.common import UsageError

__all__ = ["command"]

MISSING = 'the web app needs gradio: pip install "pulse-jax[app]"'


def _flags() -> flags.FlagValues:
    fv = flags.FlagValues()
    flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; 0.0.0.0 makes the app "
                        "reachable from other machines (it says so).", flag_values=fv)
    flags.DEFINE_integer("port", 7860, "Port to listen on.", flag_values=fv)
    flags.DEFINE_string("checkpoint", "", "A model offered first (a folder, ffhq1024 or "
                        "default), beside the shipped one and the cache's.", flag_values=fv)
    flags.DEFINE_string("cache_dir", "", "The cache holding converted checkpoints (default "
                        "$PULSE_JAX_HOME or ~/.cache/pulse_jax).", flag_values=fv)
    flags.DEFINE_string("work_dir", None, "Where requests are worked on and uploads kept "
                        "(default: a fresh temporary folder, removed at exit).", flag_values=fv)
    flags.DEFINE_integer("steps", 100, "The page's default steps.", flag_values=fv)
    flags.DEFINE_integer("restarts", 4, "The page's default restarts.", flag_values=fv)
    flags.DEFINE_integer("upscale", 4, "The page's default upscale for photos.", flag_values=fv)
    flags.DEFINE_integer("max_upload_mb", 20, "The largest upload, in MB.", flag_values=fv)
    flags.DEFINE_float("max_megapixels", 16.8, "The most pixels an upload may have, in "
                       "millions (checked before decoding).", flag_values=fv)
    return fv


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def command(argv: Sequence[str]) -> int:
    """``pulse-jax app ARGV...``: serves the app until interrupted; returns the exit status."""
    fv = _flags()
    rest = common.parse(fv, "pulse-jax app", argv, "[--host=127.0.0.1] [--port=7860] "
                        "[--checkpoint=DIR]")
    if rest:
        raise UsageError(f"app: unexpected arguments {rest} (see --help)")
    if importlib.util.find_spec("gradio") is None:
        raise UsageError(MISSING)
    if not 0 < fv.port < 65536 or fv.max_upload_mb < 1 or fv.max_megapixels <= 0:
        raise UsageError("app: --port must be 1-65535, --max_upload_mb and --max_megapixels "
                         "above 0")
    from pulse_jax import app, weights
    limits = app.Limits(max_bytes=fv.max_upload_mb * 2**20,
                        max_pixels=int(fv.max_megapixels * 1e6))
    defaults = app.Settings(upscale=fv.upscale, steps=fv.steps, restarts=fv.restarts)
    try:
        app.handle.check_settings(defaults, limits)
    except app.UploadError as e:
        raise UsageError(f"app: {e}") from None
    try:
        built = app.build(fv.checkpoint, fv.cache_dir, fv.work_dir, limits, defaults)
    except weights.CheckpointError as e:
        raise UsageError(str(e)) from None
    # Stopped by a signal, it still removes its work folder.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        app.launch(built, fv.host, fv.port, log=common.log)
    except OSError as e:  # the port is taken
        built.close()
        raise UsageError(f"app: cannot listen on {fv.host}:{fv.port}: {e}") from None
    return exit_codes.OK
