r"""Make the example LR faces in ``examples/`` from a generator's own random faces.

  python experiments/make_examples.py --checkpoint=pulse_jax/checkpoints/utkface64 --output_dir=examples

Each example is a random face of the model, downscaled by ``--factor`` with the reference's
bicubic operator and stored as an 8-bit PNG (truncated, as PULSE's align_face.py stores its
LR faces). They are images of no real person and carry no third-party licence.
"""

import pathlib

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import pulse_jax
from pulse_jax import degrade, images

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "pulse_jax/checkpoints/utkface64", "the generator")
flags.DEFINE_string("output_dir", "examples", "where the PNGs go")
flags.DEFINE_integer("count", 6, "number of faces")
flags.DEFINE_integer("factor", 8, "downscale factor (64 / 8 = 8x8 faces)")
flags.DEFINE_integer("seed", 2026, "PRNG seed of the faces")


def main(argv):
    del argv
    gen = pulse_jax.load_generator(FLAGS.checkpoint)
    hr = gen.sample(jax.random.PRNGKey(FLAGS.seed), FLAGS.count)
    lr = np.asarray(degrade.bicubic_downscale(jnp.asarray(hr), FLAGS.factor))
    out = pathlib.Path(FLAGS.output_dir)
    for i, face in enumerate(lr):
        images.save_png(out / f"face_{i:02d}.png", face)  # truncation, as the reference
    print(f"wrote {len(lr)} faces of {lr.shape[1]}x{lr.shape[2]} to {out}")


if __name__ == "__main__":
    app.run(main)
