r"""A quick look: 4 restarts of 50 steps per face, the restarts' contact sheets and LR files.

Run::

  pulse-jax upsample --config=experiments/configs/fast.py \
      --input_dir=input --output_dir=runs_fast --config.search.restarts=8

  python -m experiments.run --config=experiments/configs/fast.py \
      --config.input_dir=input --config.output_dir=runs_fast

Fewer steps miss eps more often (more steps lower the final l2; docs/reference.md, "End of a run
and success"); look at the contact sheets to see how much the restarts differ.
"""

from pulse_jax.cli import config as run_config


def get_config():
    config = run_config.get_config()
    config.output_dir = "runs_fast"
    config.search.steps = 50
    config.search.restarts = 4
    config.search.chunk_steps = 5
    config.save_lr = True
    config.save_contact_sheet = True
    return config
