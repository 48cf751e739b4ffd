r"""What ``SearchConfig.precision`` changes: speed and results of "highest" vs TF32 modes.

Two checks, each run once per precision on the same inputs and keys:

1. the shipped 64x64 model (``pulse_jax/checkpoints/utkface64``) on ``--faces`` of its own random faces
   downscaled x8: the success rate at eps, mean l2, seconds, and how far the HR outputs of
   each mode are from the first mode's, "highest" by default (max abs, in [0, 1] pixels);
2. the 1024 FFHQ architecture with random weights (nothing is downloaded), ``--big_steps``
   steps from ``--big_restarts`` starts: seconds per step and the relative L2 distance of
   the images from the first mode's.

On a CPU all modes compute in float32 (the figures then show the noise floor); on GPUs
"default" and "high" use TF32 / bf16 passes.

  python benchmarks/precision_check.py --faces=64 --big_steps=5
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import pulse_jax
from pulse_jax import degrade, images

FLAGS = flags.FLAGS
flags.DEFINE_list("precisions", ["highest", "high", "default"], "modes to compare")
flags.DEFINE_integer("faces", 64, "generated faces for the shipped-model check (0 = skip)")
flags.DEFINE_integer("steps", 100, "PULSE steps for the shipped-model check")
flags.DEFINE_integer("big_resolution", 1024, "resolution of the random-weight check (0 = skip)")
flags.DEFINE_integer("big_restarts", 8, "restarts of the random-weight check")
flags.DEFINE_integer("big_steps", 5, "steps of the random-weight check")


def per_precision(gen, lr, steps):
    """Yields ``(precision, Result, seconds, HR of the first precision)`` for each mode; the
    seconds are of a second call (the first compiles)."""
    first = None
    for p in FLAGS.precisions:
        cfg = pulse_jax.SearchConfig(steps=steps, precision=p)
        pulse_jax.upsample(gen, lr, cfg, seed=0)
        t0 = time.perf_counter()
        res = pulse_jax.upsample(gen, lr, cfg, seed=0)
        first = res.hr if first is None else first
        yield p, res, time.perf_counter() - t0, first


def main(argv):
    del argv
    dev = jax.devices()[0]
    print(f"device {dev.platform} {getattr(dev, 'device_kind', '')}; jax {jax.__version__}")
    if FLAGS.faces:
        gen = pulse_jax.default_generator()
        hr = np.asarray(gen.sample(jax.random.PRNGKey(7), FLAGS.faces))
        lr = images.to_uint8(np.asarray(degrade.bicubic_downscale(jnp.asarray(hr), 8)))
        lr = lr.astype(np.float32) / 255.0
        print(f"\nshipped model, {FLAGS.faces} of its faces at x8, {FLAGS.steps} steps, 1 restart")
        print("| precision | within eps | mean l2 | seconds | max abs diff of HR vs the first |")
        print("| --- | --- | --- | --- | --- |")
        for p, res, s, ref in per_precision(gen, lr, FLAGS.steps):
            print(f"| {p} | {np.mean(res.success):.2f} | {np.mean(res.l2):.6f} | {s:.2f} | "
                  f"{np.max(np.abs(res.hr - ref)):.2e} |", flush=True)
    if FLAGS.big_resolution:
        cfg_g = pulse_jax.GeneratorConfig(resolution=FLAGS.big_resolution)
        gen = pulse_jax.random_generator(cfg_g, jax.random.PRNGKey(0), with_mapping=False)
        D = cfg_g.dlatent_size
        gen = gen.replace_gaussian_fit(np.zeros(D, np.float32), np.ones(D, np.float32))
        # One LR image as big_restarts "faces" of one restart each: every start is kept and
        # compared (restart selection could otherwise flip between modes).
        lr = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
        lr = np.repeat(lr, FLAGS.big_restarts, axis=0)
        print(f"\n{FLAGS.big_resolution} architecture, random weights, 1 LR image x "
              f"{FLAGS.big_restarts} starts, {FLAGS.big_steps} steps")
        print("| precision | s/step | rel L2 of HR vs the first | mean l2 |")
        print("| --- | --- | --- | --- |")
        for p, res, s, ref in per_precision(gen, lr, FLAGS.big_steps):
            rel = np.linalg.norm(res.hr - ref) / np.linalg.norm(ref)
            print(f"| {p} | {s / FLAGS.big_steps:.4f} | {rel:.2e} | {np.mean(res.l2):.6f} |",
                  flush=True)


if __name__ == "__main__":
    app.run(main)
