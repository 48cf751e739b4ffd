r"""One search step over faces x restarts: vmap of a one-sample step vs one batched step.

  python benchmarks/vmap_vs_batch.py --resolution=128 --fmap_base=512 --fmap_max=32 --batch=8

Both compute the same per-sample losses and gradients (the loss is a sum of per-sample
terms); this prints the time per step of each, measured in the same run.
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import pulse_jax
from pulse_jax import search
from pulse_jax.search import steps as search_steps
from pulse_jax.search import SearchConfig
from pulse_jax.search.steps import Spec

FLAGS = flags.FLAGS
flags.DEFINE_integer("resolution", 128, "generator resolution")
flags.DEFINE_integer("fmap_base", 512, "generator fmap_base")
flags.DEFINE_integer("fmap_max", 32, "generator fmap_max")
flags.DEFINE_integer("lr_size", 16, "LR side")
flags.DEFINE_integer("batch", 8, "faces x restarts")
flags.DEFINE_integer("reps", 5, "timed repetitions")


def timed(f, *args):
    jax.block_until_ready(f(*args))
    t0 = time.perf_counter()
    for _ in range(FLAGS.reps):
        jax.block_until_ready(f(*args))
    return (time.perf_counter() - t0) / FLAGS.reps


def main(argv):
    del argv
    cfg = pulse_jax.GeneratorConfig(resolution=FLAGS.resolution, fmap_base=FLAGS.fmap_base,
                                    fmap_max=FLAGS.fmap_max)
    gen = pulse_jax.random_generator(cfg, jax.random.PRNGKey(0), with_mapping=False)
    D = cfg.dlatent_size
    gen = gen.replace_gaussian_fit(np.zeros(D, np.float32), np.ones(D, np.float32))
    scfg = SearchConfig()
    spec = Spec.make(cfg, scfg, cfg.resolution // FLAGS.lr_size)
    B = FLAGS.batch
    params, frozen = jax.vmap(lambda k: search_steps.draw(spec, k))(search.restart_keys(0, range(B), 1))
    ref = jnp.asarray(np.random.default_rng(0).uniform(size=(B, FLAGS.lr_size, FLAGS.lr_size, 3)),
                      jnp.float32)

    batched = jax.jit(lambda p, f, r: search.loss_and_grad(spec, gen, p, f, r))

    def one(p, f, r):  # a single sample, given a batch axis of 1 inside
        add = lambda t: jax.tree_util.tree_map(lambda x: x[None], t)
        tot, terms, g = search.loss_and_grad(spec, gen, add(p), add(f), r[None])
        return jax.tree_util.tree_map(lambda x: x[0], (tot, terms, g))

    vmapped = jax.jit(jax.vmap(one))
    tb, tv = timed(batched, params, frozen, ref), timed(vmapped, params, frozen, ref)
    gb, gv = batched(params, frozen, ref)[2]["z"], vmapped(params, frozen, ref)[2]["z"]
    print(f"device {jax.devices()[0].platform}, {cfg.resolution}x{cfg.resolution}, batch {B}")
    print(f"batched step  {tb * 1e3:8.1f} ms")
    print(f"vmapped step  {tv * 1e3:8.1f} ms")
    print(f"max |grad difference| {float(jnp.abs(gb - gv).max()):.2e}")


if __name__ == "__main__":
    app.run(main)
