r"""A tiny training run for tests and smoke checks: 8 x 8, tiny widths, a few steps.

Run (any folder or zip of images; they are resized to 8 x 8)::

  python experiments/train.py --config=experiments/configs/train_tiny.py \
      --workdir=/tmp/train_tiny --config.data.path=/tmp/toy_images
  # then again with more steps: it resumes from the newest checkpoint
  python experiments/train.py --config=experiments/configs/train_tiny.py \
      --workdir=/tmp/train_tiny --config.data.path=/tmp/toy_images --config.steps=8

Generator: ``GeneratorConfig(resolution=8, fmap_base=32, fmap_max=16, dlatent_size=16,
mapping_layers=2)`` (widths 16, 8; L = 4), a matching D; batch 8; 4 steps with checkpoints
and samples every 2; the export uses 10,000 mapping samples for its Gaussian fit.
"""

import ml_collections


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.generator = ml_collections.ConfigDict(dict(
        resolution=8, fmap_base=32, fmap_decay=1.0, fmap_max=16, dlatent_size=16,
        mapping_layers=2, mapping_lrmul=0.01))
    c.discriminator = ml_collections.ConfigDict(dict(
        architecture="orig", fmap_base=32, fmap_max=16, mbstd_group_size=4,
        mbstd_num_features=1))
    c.data = ml_collections.ConfigDict(dict(path="", flip=True, max_images=0))
    c.batch_size = 8
    c.steps = 4
    c.max_seconds = 0
    c.g_lr = 0.005
    c.d_lr = 0.005
    c.adam_b1 = 0.0
    c.adam_b2 = 0.99
    c.adam_eps = 1e-8
    c.r1_gamma = 0.1
    c.r1_interval = 1
    c.ema_kimg = 0.5
    c.ema_rampup = 0.05
    c.style_mixing_prob = 0.9
    c.compute_dtype = "float32"
    c.devices = 1
    c.checkpoint_every = 2
    c.keep_checkpoints = 2
    c.checkpoint_max_file_mib = 16   # no checkpoint file larger (a run moves in pieces)
    c.sample_every = 2
    c.sample_count = 16
    c.log_every = 1
    c.progress = True
    c.export = ml_collections.ConfigDict(dict(
        enabled=True, path="", fit_samples=10_000, dtype="float16"))
    c.licence = ""
    return c
