r"""The interim offline default: a small 64 x 64 model that a 2-core CPU can train in an hour.

The shipped model's settings (``train_utkface64.py``) need a GPU (0.9 images/s on a 2-core
CPU). This variant trades width for speed so that a CPU-only session can still ship a working
default: it is much blurrier than a GPU-trained model and is meant to be replaced by it.

Run::

  python experiments/train.py --config=experiments/configs/train_utkface64_cpu.py \
      --workdir=runs/train_utkface64_cpu

Architecture: ``GeneratorConfig(resolution=64, fmap_base=512, fmap_max=128, dlatent_size=128,
mapping_layers=4)``: widths 128, 128, 64, 32, 16; 10 style layers (about 0.2 GFLOP per
image forward, a third of fmap_base=1024's). The last 300 faces of the
zip (by sorted file name) are held out for the PULSE evaluation in checkpoints/README.md.
"""

from experiments.configs import train_utkface64

HELD_OUT = 300
NUM_FACES = 23206


def get_config():
    c = train_utkface64.get_config()
    c.generator.update(dict(fmap_base=512, fmap_max=128, dlatent_size=128, mapping_layers=4))
    c.discriminator.update(dict(fmap_base=512, fmap_max=128))
    c.data.max_images = NUM_FACES - HELD_OUT
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
