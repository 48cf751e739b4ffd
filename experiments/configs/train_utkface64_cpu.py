r"""A smaller 64 x 64 model that a 2-core CPU can train in an hour (the former interim default).

``train_utkface64.py``, the shipped model's settings, runs at about 10 images/s on a 2-core
CPU (batch 8; ``benchmarks/train_bench.py``), so it needs a GPU (5,220 images/s on an H200).
This variant trades width for speed for a machine without one: it made the first offline
default (7,200 steps of batch 16 in 62 minutes; recognizable but blurry faces).

Run::

  python experiments/train.py --config=experiments/configs/train_utkface64_cpu.py \
      --workdir=runs/train_utkface64_cpu

Architecture: ``GeneratorConfig(resolution=64, fmap_base=512, fmap_max=128, dlatent_size=128,
mapping_layers=4)``: widths 128, 128, 64, 32, 16; 10 style layers (0.41 GFLOP per PULSE
face-restart step, a quarter of the shipped model's). It holds out the same last 300 faces.
"""

from experiments.configs import train_utkface64


def get_config():
    c = train_utkface64.get_config()
    c.generator.update(dict(fmap_base=512, fmap_max=128, dlatent_size=128, mapping_layers=4))
    c.discriminator.update(dict(fmap_base=512, fmap_max=128))
    c.batch_size = 16
    c.g_lr = 0.0025
    c.d_lr = 0.0025
    c.r1_interval = 4          # lazy R1 (StyleGAN2): a quarter of the double-backward cost
    c.r1_gamma = 0.05
    c.ema_kimg = 2.0
    c.steps = 100_000          # stopped by time; export explicitly (see checkpoints/README.md)
    c.checkpoint_every = 200
    c.sample_every = 500
    c.keep_checkpoints = 2
    return c
