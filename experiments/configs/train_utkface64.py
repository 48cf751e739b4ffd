r"""The shipped model: a 64 x 64 StyleGAN v1 trained on UTKFace (23,206 faces).

Run (from the repository root; resumes from the newest checkpoint in the workdir)::

  python experiments/train.py --config=experiments/configs/train_utkface64.py \
      --workdir=runs/train_utkface64
  # e.g. shorter, or mixed precision on a GPU/TPU:
  python experiments/train.py --config=experiments/configs/train_utkface64.py \
      --workdir=runs/train_utkface64 --config.steps=50000 --config.compute_dtype=bfloat16

At the end the EMA generator is exported with a Gaussian fit (1,000,000 mapping samples, the
reference's recipe) as a float16 pulse-jax checkpoint in ``{workdir}/generator``.

Data: ``../shared/data/utkface64.zip`` (relative to the current folder, else to the
repository root). UTKFace is licensed for non-commercial research only, and so is any model
trained on it: the exported manifest carries ``licence`` saying so. Never commit the images.

Architecture: ``GeneratorConfig(resolution=64, fmap_base=4096, fmap_max=256,
dlatent_size=256)``, 8 mapping layers (lrmul 0.01). Widths ``nf(s) = min(4096 / 2**s, 256)``:
blocks 4..32 have 256 channels and the 64 x 64 block 128; L = 10 style layers.
Exported checkpoint size (float16)::

  synthesis 5,764,483 params + mapping 526,336 params = 6,290,819 params
  x 2 bytes = 12,581,638 bytes ~ 12.6 MB (12.0 MiB), plus the 2 KB float32 Gaussian fit
  and the npz/manifest overhead (a few KB): well under 20 MB.

(``dlatent_size=512`` would give 18.1 MB; ``fmap_base=8192`` 14.3 MB.) The D has the same
width formula (5,625,217 params); a training checkpoint (G, D, EMA, two Adam states, all
float32) holds 42,038,932 numbers = 168 MB.

Training: batch 32, Adam (lr 0.002, b1 0, b2 0.99, eps 1e-8), R1 gamma 0.05 every step,
EMA half-life 10k images (ramped up over the first images, StyleGAN2-ADA's 0.05), style
mixing 0.9, horizontal flips. R1 gamma for 64 x 64: StyleGAN's FFHQ gamma of 10 at
1024 x 1024 scaled by the pixel count, 10 * (64 / 1024)**2 = 0.04, and StyleGAN2-ADA's
heuristic 0.0002 * 64**2 / 32 = 0.026; we take 0.05, on the stable side. 100k steps =
3.2M images (about 140 epochs).
"""

import ml_collections

LICENCE = ("Trained on UTKFace (Zhang, Song, Qi, CVPR 2017), which is available for "
           "non-commercial research purposes only; the copyright of each image belongs to "
           "its owner. This model inherits that restriction: non-commercial research use only.")


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.generator = ml_collections.ConfigDict(dict(
        resolution=64, fmap_base=4096, fmap_decay=1.0, fmap_max=256, dlatent_size=256,
        mapping_layers=8, mapping_lrmul=0.01))
    # The D's widths default to the generator's formula; set fields here to change them.
    c.discriminator = ml_collections.ConfigDict(dict(
        architecture="orig", fmap_base=4096, fmap_max=256, mbstd_group_size=4,
        mbstd_num_features=1))
    c.data = ml_collections.ConfigDict(dict(
        path="../shared/data/utkface64.zip", flip=True, max_images=0))
    c.batch_size = 32
    c.steps = 100_000
    c.g_lr = 0.002
    c.d_lr = 0.002
    c.adam_b1 = 0.0
    c.adam_b2 = 0.99
    c.adam_eps = 1e-8
    c.r1_gamma = 0.05
    c.r1_interval = 1
    c.ema_kimg = 10.0          # EMA half-life in thousands of images
    c.ema_rampup = 0.05        # 0 = off
    c.style_mixing_prob = 0.9
    c.compute_dtype = "float32"  # "bfloat16" on GPU/TPU (slower on CPU)
    c.devices = 0              # 0 = all local devices (data-parallel)
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.sample_every = 2000
    c.sample_count = 64
    c.log_every = 20           # steps between loss updates of the progress bar
    c.progress = True
    c.export = ml_collections.ConfigDict(dict(
        enabled=True, path="", fit_samples=1_000_000, dtype="float16"))
    c.licence = LICENCE
    return c
