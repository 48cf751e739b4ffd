"""Moved to :mod:`pulse_jax.cli.config` (kept for ``from pulse_jax import run_config``)."""
from pulse_jax.cli.config import *  # noqa: F401,F403
