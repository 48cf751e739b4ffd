"""The reference's settings (every flag of PULSE's ``run.py`` with its default) and ours:
the config of ``pulse-jax upsample``, documented in ``pulse_jax/cli/config.py``.

Run::

  python -m experiments.run --config=experiments/configs/default.py \
      --config.input_dir=input --config.output_dir=runs
"""

from pulse_jax.cli.config import get_config

__all__ = ["get_config"]
