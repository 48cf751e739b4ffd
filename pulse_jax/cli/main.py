"""The ``pulse-jax`` dispatcher: ``pulse-jax COMMAND [flags]``, ``--version``, ``--help``.

Each command is a module of this package that parses its flags and calls the library;
this one picks it and turns what it raises into the exit status (:mod:`pulse_jax.exit_codes`).
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence

from absl import logging as absl_logging

from pulse_jax import exit_codes, folder_lock
from pulse_jax.cli import (align_command, app_command, common, convert_command,
                           evaluate_command, info_command, merge_command, template_command,
                           upsample_command)
from pulse_jax.cli.common import UsageError

__all__ = ["main", "run", "version"]

_USAGE = """\
usage: pulse-jax COMMAND [flags]

commands:
  upsample   upsample LR faces (`pulse-jax upsample --help` lists the flags)
  align      find the faces in photos and crop them as the generator's training faces
             (needs the align extra: pip install "pulse-jax[align]")
  evaluate   measure PULSE against ground-truth faces: identity, quality, per-group report
             (needs the evaluate extra: pip install "pulse-jax[evaluate]")
  convert    convert official weights into a pulse-jax checkpoint
  info       print a checkpoint's manifest
  merge      merge the manifest parts of a multi-process run
  template   measure a generator's framing template on its own faces (align extra)
  app        a local web app: photo in, upscaled photo and every restart out
             (needs the app extra: pip install "pulse-jax[app]")
  version    print the versions of pulse-jax, jax and jaxlib (also --version)
"""


_COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "upsample": upsample_command.command, "align": align_command.align_main,
    "evaluate": evaluate_command.command, "convert": convert_command.command, "info": info_command.command,
    "merge": merge_command.command, "template": template_command.command,
    "app": app_command.command}


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
    command = _COMMANDS.get(args[0])
    if command is None:
        common.err(f"unknown command {args[0]!r}\n{_USAGE}")
        return exit_codes.USAGE
    absl_logging.set_verbosity(absl_logging.WARNING)  # hide JAX's backend chatter
    try:
        return command(args[1:])
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except UsageError as e:
        common.err(str(e))
        return exit_codes.USAGE
    except folder_lock.OutputBusyError as e:
        common.err(str(e))
        return exit_codes.BUSY
    except KeyboardInterrupt:
        common.err("interrupted; rerun the same command to resume")
        return exit_codes.INTERRUPTED


def main(argv: Optional[Sequence[str]] = None) -> None:
    """The ``pulse-jax`` console script: ``argv`` (default ``sys.argv``) is the program name
    and :func:`run`'s arguments; exits with the status."""
    argv = list(sys.argv if argv is None else argv)
    sys.exit(run(argv[1:]))
