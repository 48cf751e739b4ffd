r"""The shipped model: a 64 x 64 StyleGAN v1 trained on UTKFace (23,206 faces).

Run (from the repository root; resumes from the newest checkpoint in the workdir)::

  python experiments/train.py --config=experiments/configs/train_utkface64.py \
      --workdir=runs/train_utkface64
  # e.g. a bounded session (checkpoints and exports what it has; run again to continue):
  python experiments/train.py --config=experiments/configs/train_utkface64.py \
      --workdir=runs/train_utkface64 --config.max_seconds=3600

``experiments/gpu_train_utkface64.sh`` is the command that trained ``pulse_jax/checkpoints/utkface64``
on a lent GPU. At the end the EMA generator is exported with a Gaussian fit (1,000,000
mapping samples, the reference's recipe) as a float16 pulse-jax checkpoint in
``{workdir}/generator``.

Data: ``.data/utkface64.zip``, an ignored folder (relative to the current folder, else to the
repository root). The last ``HELD_OUT`` = 300 faces by file name are never trained on: the
PULSE evaluation in checkpoints/README.md uses them. UTKFace is licensed for non-commercial
research only, and so is any model trained on it: the exported manifest carries ``licence``
saying so. Never commit the images.

Architecture, sized for the offline default: the README's main job runs PULSE with it on a
2-core CPU, so each search step must stay cheap, and the checkpoint under 20 MB.
``GeneratorConfig(resolution=64, fmap_base=1024, fmap_max=256, dlatent_size=256)``, 8 mapping
layers (lrmul 0.01): widths ``nf(s) = min(1024 / 2**s, 256)`` give 256, 256, 128, 64, 32
channels for the blocks 4 .. 64; L = 10 style layers.

  synthesis 3,113,827 + mapping 526,336 = 3,640,163 params x 2 bytes (float16) = 7.3 MB

A PULSE step costs 1.6 GFLOP per face-restart (XLA's count; ``benchmarks/search_bench.py
--resolution=64 --lr_size=8 --fmap_base=1024 --fmap_max=256 --dlatent_size=256``), 4x the
CPU-trained variant's; the full width (fmap_base 4096: 256 channels down to 32 x 32) would be
12.6 MB and 24x, too slow for the main job on a CPU. The D has the same width formula
(3,403,041 params); a training checkpoint (G, D, EMA, two Adam states, float32) is 99 MB.

Training: batch 64, Adam (lr 0.0025, b1 0, b2 0.99, eps 1e-8; StyleGAN2-ADA's settings for
small resolutions), R1 gamma 0.05 every step, EMA half-life 10k images (ramped up over the
first images, StyleGAN2-ADA's 0.05), style mixing 0.9, horizontal flips, float32 (TF32 on
GPUs; ``compute_dtype="bfloat16"`` is measured by ``benchmarks/train_bench.py``). R1 gamma
for 64 x 64: StyleGAN's FFHQ gamma of 10 at 1024 x 1024 scaled by the pixel count,
10 * (64 / 1024)**2 = 0.04, and StyleGAN2-ADA's heuristic 0.0002 * 64**2 / 64 = 0.013; we
take 0.05, on the stable side.
"""

import ml_collections

HELD_OUT = 300
NUM_FACES = 23206

LICENCE = ("Trained on UTKFace (Zhang, Song, Qi, CVPR 2017), which is available for "
           "non-commercial research purposes only; the copyright of each image belongs to "
           "its owner. This model inherits that restriction: non-commercial research use only.")


def get_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.generator = ml_collections.ConfigDict(dict(
        resolution=64, fmap_base=1024, fmap_decay=1.0, fmap_max=256, dlatent_size=256,
        mapping_layers=8, mapping_lrmul=0.01))
    # The D's widths default to the generator's formula; set fields here to change them.
    c.discriminator = ml_collections.ConfigDict(dict(
        architecture="orig", fmap_base=1024, fmap_max=256, mbstd_group_size=4,
        mbstd_num_features=1))
    c.data = ml_collections.ConfigDict(dict(
        path=".data/utkface64.zip", flip=True, max_images=NUM_FACES - HELD_OUT))
    c.batch_size = 64
    c.steps = 100_000
    c.max_seconds = 0          # wall-clock budget of one run; 0 = none
    c.g_lr = 0.0025
    c.d_lr = 0.0025
    c.adam_b1 = 0.0
    c.adam_b2 = 0.99
    c.adam_eps = 1e-8
    c.r1_gamma = 0.05
    c.r1_interval = 1
    c.ema_kimg = 10.0          # EMA half-life in thousands of images
    c.ema_rampup = 0.05        # 0 = off
    c.style_mixing_prob = 0.9
    c.compute_dtype = "float32"  # "bfloat16": mixed precision (GPU/TPU; slower on CPU)
    c.devices = 0              # 0 = all local devices (data-parallel)
    c.checkpoint_every = 2000
    c.keep_checkpoints = 3
    c.checkpoint_max_file_mib = 16   # no checkpoint file larger (a run moves in pieces)
    c.sample_every = 2000
    c.sample_count = 64
    c.log_every = 20           # steps between loss updates of the progress bar
    c.progress = True
    c.export = ml_collections.ConfigDict(dict(
        enabled=True, path="", fit_samples=1_000_000, dtype="float16"))
    c.licence = LICENCE
    return c
