"""What every ``pulse-jax`` command shares: its one error type, its messages, flag parsing."""

from __future__ import annotations

import sys
from typing import Sequence

from absl import flags

from pulse_jax import exit_codes

__all__ = ["HELP", "UsageError", "err", "log", "parse"]

HELP = ("-h", "--help", "-help", "--helpshort")


class UsageError(Exception):
    """A problem reported in one message with exit status 2 (no traceback)."""


def err(msg: str) -> None:
    """A problem, on stderr, named as the command's."""
    print(f"pulse-jax: {msg}", file=sys.stderr, flush=True)


def log(msg: str) -> None:
    """Progress and summaries go to stderr (stdout is for what a command prints)."""
    print(msg, file=sys.stderr, flush=True)


def parse(fv: flags.FlagValues, prog: str, argv: Sequence[str], usage: str) -> list[str]:
    """Parses ``argv`` into ``fv``; returns the positional arguments. ``--help`` prints the
    usage and exits 0; a bad flag is a :class:`UsageError`."""
    if any(a in HELP for a in argv):
        print(f"usage: {prog} {usage}\n\n{fv.get_help()}")
        sys.exit(exit_codes.OK)
    try:
        return fv([prog, *argv])[1:]
    except flags.Error as e:
        raise UsageError(f"{prog}: {e} (see --help)") from None
