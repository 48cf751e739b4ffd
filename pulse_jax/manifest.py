"""Moved to :mod:`pulse_jax.batch.manifest`; kept for the imports of cli and align.pipeline."""
from pulse_jax.batch.manifest import merge_manifests, read_records  # noqa: F401
