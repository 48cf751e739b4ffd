r"""A tiny testing config: a few steps, for the test suite and smoke checks on a small
generator (e.g. the 32x32 one of ``tests/fakes.py``, whose LR faces are 8x8).

Run::

  pulse-jax upsample --config=experiments/configs/tiny.py \
      --checkpoint=/tmp/tiny_ckpt --input_dir=/tmp/faces --output_dir=/tmp/out
"""

from pulse_jax.cli import config as run_config


def get_config():
    config = run_config.get_config()
    config.output_dir = "runs_tiny"
    config.search.steps = 4
    config.search.chunk_steps = 2
    config.search.restarts = 2
    config.devices = 1
    config.progress = False
    return config
