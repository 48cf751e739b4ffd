r"""Upsample a folder of low-resolution faces with PULSE: ``pulse-jax upsample`` as a module.

Usage (from the repository root)::

  python -m experiments.run --config=experiments/configs/default.py \
      --config.input_dir=input --config.output_dir=runs --checkpoint=ckpt/ffhq1024
  python -m experiments.run --config=experiments/configs/fast.py \
      --input_dir=input --config.search.steps=200 --config.search.restarts=4
  python -m experiments.run --config=experiments/configs/default.py --print_config

The flags, the config fields and the exit status are those of ``pulse-jax upsample``
(:mod:`pulse_jax.cli`, :mod:`pulse_jax.cli.config`).
"""

import sys

from pulse_jax import cli

if __name__ == "__main__":
    cli.main([sys.argv[0], "upsample", *sys.argv[1:]])
