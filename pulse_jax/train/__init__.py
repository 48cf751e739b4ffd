"""Training a StyleGAN v1 generator for pulse-jax (same :class:`GeneratorConfig` and params
as the imported ones, so a trained model loads and searches like them).

* :mod:`~pulse_jax.train.discriminator`: StyleGAN v1's D (or a residual one), equalized lr.
* :mod:`~pulse_jax.train.losses`: non-saturating logistic G loss, logistic D loss, R1.
* :mod:`~pulse_jax.train.data`: images from a folder or zip, a resumable shuffled stream.
* :mod:`~pulse_jax.train.state`: the frozen :class:`TrainConfig`, the :class:`TrainState`
  pytree, StyleGAN's Adam and the initial state.
* :mod:`~pulse_jax.train.step`: the jitted data-parallel train step (D, then G, then the
  EMA), style mixing, mixed precision, the ``"batch"`` mesh.
* :mod:`~pulse_jax.train.checkpoints`: orbax checkpoints with exact resume, rotation and
  files of at most :data:`MAX_FILE_BYTES` (16 MiB) each.
* :mod:`~pulse_jax.train.loop`: :func:`train` (resuming, checkpointing, sampling, a time
  budget), sample grids and the export to a pulse-jax checkpoint.

The entry point is ``experiments/train.py``.
"""

from pulse_jax.train.checkpoints import (MAX_FILE_BYTES, latest_checkpoint, load_checkpoint,
                                         restore_or_init, save_checkpoint)
from pulse_jax.train.data import BatchStream, Dataset, load_images
from pulse_jax.train.discriminator import Discriminator, DiscriminatorConfig
from pulse_jax.train.loop import export_generator, sample_images, save_sample_grid, train
from pulse_jax.train.state import TrainConfig, TrainState, init_state
from pulse_jax.train.step import batch_mesh, make_train_step, replicate, shard_batch

__all__ = [
    "BatchStream", "Dataset", "Discriminator", "DiscriminatorConfig", "MAX_FILE_BYTES",
    "TrainConfig", "TrainState", "batch_mesh", "export_generator", "init_state",
    "latest_checkpoint", "load_checkpoint", "load_images", "make_train_step", "replicate",
    "restore_or_init", "sample_images", "save_checkpoint", "save_sample_grid", "shard_batch",
    "train",
]
