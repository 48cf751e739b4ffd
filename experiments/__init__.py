"""Entry points of pulse-jax: the absl runner (``experiments/run.py``), its ``ml_collections``
configs (``experiments/configs/*.py``) and the ``pulse-jax`` console script (``cli.py``)."""
