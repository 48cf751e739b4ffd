"""Moved to :mod:`pulse_jax.batch.multihost`; kept for the imports of cli and align.pipeline."""
from pulse_jax.batch.multihost import (distributed_requested, from_process_0,  # noqa: F401
                                       hold_output, initialize)
