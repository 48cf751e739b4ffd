"""Moved to :mod:`pulse_jax.weights.torch.files`; this path stays for ``pulse_jax.cli``."""
from pulse_jax.weights.torch.files import load_torch_file  # noqa: F401
