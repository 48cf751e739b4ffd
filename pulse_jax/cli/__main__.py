"""``python -m pulse_jax.cli ARGS...``: the ``pulse-jax`` command."""

from pulse_jax.cli.main import main

main()
