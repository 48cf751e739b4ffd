r"""Device memory of one search step per restart, from XLA's memory analysis, and how many
restarts fit in a given amount of accelerator memory.

Compiles the step program (``SearchConfig.loop="device"``, ``upconv="direct"``: what GPUs and
TPUs run) for ``B = 1`` and ``B = --probe`` face-restarts, reads the argument, output and
temporary buffer sizes XLA assigns, and fits ``bytes(B) = fixed + per_restart * B``. The
figures come from the backend this runs on (XLA:CPU here unless a GPU/TPU is present); other
backends fuse and lay out buffers differently, so treat CPU figures as estimates.

  python benchmarks/memory_per_restart.py                      # 1024 FFHQ shape, CPU estimate
  python benchmarks/memory_per_restart.py --remat --probe=4
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import pulse_jax
from pulse_jax.search import stages as search_stages, steps as search_steps
from pulse_jax.search import SearchConfig, restart_keys

FLAGS = flags.FLAGS
flags.DEFINE_integer("resolution", 1024, "generator resolution")
flags.DEFINE_integer("lr_size", 32, "LR side")
flags.DEFINE_integer("probe", 4, "second batch size of the linear fit")
flags.DEFINE_bool("remat", False, "rematerialize synthesis blocks")
flags.DEFINE_list("budgets_gib", ["15", "22", "40", "80", "16"],
                  "memory sizes to report restarts for (GiB usable)")


def step_bytes(gen, cfg, batch: int) -> tuple[int, float]:
    spec = search_steps.Spec.make(gen.config, cfg, FLAGS.resolution // FLAGS.lr_size)
    stages = search_stages.build(spec, None, batch)
    weights = jax.eval_shape(stages.prepare, gen)
    keys = restart_keys(0, list(range(batch)), 1)
    state = jax.eval_shape(lambda k: stages.init(*stages.draw(k)), keys)
    lr = jax.ShapeDtypeStruct((batch, FLAGS.lr_size, FLAGS.lr_size, 3), jnp.float32)
    t0 = time.perf_counter()
    compiled = stages.step.lower(weights, lr, state, jnp.int32(1)).compile()
    mem = compiled.memory_analysis()
    total = (mem.argument_size_in_bytes + mem.output_size_in_bytes + mem.temp_size_in_bytes
             - getattr(mem, "alias_size_in_bytes", 0))
    return total, time.perf_counter() - t0


def main(argv):
    del argv
    cfg = pulse_jax.GeneratorConfig(resolution=FLAGS.resolution)
    gen = pulse_jax.random_generator(cfg, jax.random.PRNGKey(0), with_mapping=False)
    gen = gen.replace_gaussian_fit(np.zeros(cfg.dlatent_size, np.float32),
                                   np.ones(cfg.dlatent_size, np.float32))
    scfg = SearchConfig(loop="device", upconv="direct", remat=FLAGS.remat)
    one, t1 = step_bytes(gen, scfg, 1)
    more, t2 = step_bytes(gen, scfg, FLAGS.probe)
    per = (more - one) / (FLAGS.probe - 1)
    fixed = one - per
    print(f"backend              {jax.default_backend()} (XLA memory analysis)")
    print(f"generator            {cfg.resolution}x{cfg.resolution}, LR {FLAGS.lr_size}, "
          f"remat {FLAGS.remat}")
    print(f"compiles             {t1:.0f} s + {t2:.0f} s")
    print(f"step bytes, B=1      {one / 2**30:.2f} GiB; B={FLAGS.probe}: {more / 2**30:.2f} GiB")
    print(f"fixed + per restart  {fixed / 2**30:.2f} GiB + {per / 2**30:.3f} GiB x restarts")
    for g in FLAGS.budgets_gib:
        n = int((float(g) * 2**30 - fixed) // per) if per > 0 else 0
        print(f"fits in {float(g):>5.0f} GiB    {max(n, 0)} face-restarts")


if __name__ == "__main__":
    app.run(main)
