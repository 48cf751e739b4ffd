"""Training a StyleGAN v1 generator for pulse-jax (same :class:`GeneratorConfig` and params
as the imported ones, so a trained model loads and searches like them).

* :mod:`~pulse_jax.train.discriminator`: StyleGAN v1's D (or a residual one), equalized lr.
* :mod:`~pulse_jax.train.losses`: non-saturating logistic G loss, logistic D loss, R1.
* :mod:`~pulse_jax.train.data`: images from a folder or zip, a resumable shuffled stream.
* :mod:`~pulse_jax.train.trainer`: the jitted data-parallel train step, EMA, style mixing,
  checkpoints with exact resume, sample grids and the export to a pulse-jax checkpoint.

The entry point is ``experiments/train.py``.
"""

from pulse_jax.train.data import BatchStream, Dataset, load_images
from pulse_jax.train.discriminator import Discriminator, DiscriminatorConfig
from pulse_jax.train.trainer import (TrainConfig, TrainState, batch_mesh, export_generator,
                                     init_state, latest_checkpoint, load_checkpoint,
                                     make_train_step, restore_or_init, sample_images,
                                     save_checkpoint, save_sample_grid, shard_batch, train)

__all__ = [
    "BatchStream", "Dataset", "Discriminator", "DiscriminatorConfig", "TrainConfig",
    "TrainState", "batch_mesh", "export_generator", "init_state", "latest_checkpoint",
    "load_checkpoint", "load_images", "make_train_step", "restore_or_init", "sample_images",
    "save_checkpoint", "save_sample_grid", "shard_batch", "train",
]
