"""Moved: :mod:`pulse_jax.files` (names), :mod:`pulse_jax.batch.faces`; kept for align's imports."""
from pulse_jax.files import safe_stem, unique_names  # noqa: F401
