r"""Speed of the PULSE search step, next to the machine's own matmul peak.

Prints, for a generator config, a batch of faces and a restart count: compile time, time per
step, face-restart-steps per second, the FLOPs XLA counts for one step, and the same machine's
float32 matmul peak measured in this run, so the fraction of peak is visible.

  python benchmarks/search_bench.py --resolution=1024 --faces=1 --restarts=1 --steps=2
  python benchmarks/search_bench.py --resolution=128 --fmap_base=512 --fmap_max=32 \
      --faces=4 --restarts=4 --steps=20 --precision=default --remat

Weights are random (speed does not depend on them); nothing is downloaded.
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np

import pulse_jax
from pulse_jax import search
from pulse_jax.search import stages as search_stages
from pulse_jax.search import SearchConfig
from pulse_jax.search.steps import Spec
from timing import matmul_peak

FLAGS = flags.FLAGS
flags.DEFINE_integer("resolution", 1024, "generator resolution")
flags.DEFINE_integer("fmap_base", 8192, "generator fmap_base")
flags.DEFINE_integer("fmap_max", 512, "generator fmap_max")
flags.DEFINE_float("fmap_decay", 1.0, "generator fmap_decay")
flags.DEFINE_integer("dlatent_size", 512, "generator dlatent_size")
flags.DEFINE_integer("lr_size", 32, "LR side (factor = resolution / lr_size)")
flags.DEFINE_integer("faces", 1, "faces per batch")
flags.DEFINE_integer("restarts", 1, "restarts per face")
flags.DEFINE_integer("steps", 2, "timed steps (after one warm-up call)")
flags.DEFINE_enum("precision", "highest", ["highest", "high", "default"], "matmul precision")
flags.DEFINE_bool("remat", False, "rematerialize synthesis blocks")
flags.DEFINE_enum("loop", "auto", list(search.LOOPS), "step loop (SearchConfig.loop)")
flags.DEFINE_enum("upconv", "auto", list(search.UPCONVS), "upsampling convs (SearchConfig.upconv)")
flags.DEFINE_enum("epilogue", "auto", list(search.EPILOGUES), "epilogue gradient (SearchConfig.epilogue)")
flags.DEFINE_integer("peak_n", 2048, "matrix side for the matmul peak")
flags.DEFINE_bool("compile_only", False, "print compile time, FLOPs and memory, then stop")


def main(argv):
    del argv
    cfg = pulse_jax.GeneratorConfig(resolution=FLAGS.resolution, fmap_base=FLAGS.fmap_base,
                                    fmap_max=FLAGS.fmap_max, fmap_decay=FLAGS.fmap_decay,
                                    dlatent_size=FLAGS.dlatent_size)
    gen = pulse_jax.random_generator(cfg, jax.random.PRNGKey(0), with_mapping=False)
    D = cfg.dlatent_size
    gen = gen.replace_gaussian_fit(np.zeros(D, np.float32), np.ones(D, np.float32))
    scfg = SearchConfig(steps=max(FLAGS.steps, 1) + 1, restarts=FLAGS.restarts,
                        precision=FLAGS.precision, remat=FLAGS.remat, loop=FLAGS.loop,
                        upconv=FLAGS.upconv, epilogue=FLAGS.epilogue)
    factor = cfg.resolution // FLAGS.lr_size
    spec = Spec.make(cfg, scfg, factor)
    B = FLAGS.faces * FLAGS.restarts
    stages = search_stages.build(spec, None, B)
    draw, init, run = stages.draw, stages.init, stages.run
    weights = stages.prepare(gen)
    ids = list(range(FLAGS.faces))
    lr = jnp.asarray(np.random.default_rng(0).uniform(size=(B, FLAGS.lr_size, FLAGS.lr_size, 3)),
                     jnp.float32)
    state = init(*draw(search.restart_keys(0, ids, FLAGS.restarts)))

    t0 = time.perf_counter()
    # One step's program: the host loop's step, or the device loop's body run once.
    one = () if spec.cfg.loop == "host" else (jnp.int32(1),)
    lowered = stages.step.lower(weights, lr, state, *one)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t0
    mem = compiled.memory_analysis()
    temp_bytes = getattr(mem, "temp_size_in_bytes", None) if mem is not None else None
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops_per_call = float(cost.get("flops", float("nan"))) if cost else float("nan")

    dev = jax.devices()[0]
    print(f"device               {dev.platform} {getattr(dev, 'device_kind', '')} x{jax.device_count()}")
    print(f"generator            {cfg.resolution}x{cfg.resolution}, {cfg.num_layers} layers, widths {cfg.widths}")
    print(f"batch                {FLAGS.faces} faces x {FLAGS.restarts} restarts = {B}, LR {FLAGS.lr_size} (x{factor})")
    print(f"precision / remat    {FLAGS.precision} / {FLAGS.remat}")
    print(f"loop / upconv / epi  {spec.cfg.loop} / {spec.cfg.upconv} / {spec.cfg.epilogue}")
    print(f"host malloc          {pulse_jax.host_memory.state()['mode']}")
    print(f"compile              {compile_s:.2f} s")
    if temp_bytes is not None:
        print(f"step temp memory     {temp_bytes / 2**20:.0f} MiB (XLA's buffer assignment)")
    print(f"step FLOPs (XLA)     {flops_per_call / 1e9:.2f} GFLOP ({flops_per_call / B / 1e9:.2f} per face-restart)")
    if dev.platform != "cpu":
        # Seen on an H200: 4.1 GFLOP per 1024 face-restart step against XLA:CPU's 173,
        # apparently without the convolutions run through cuDNN.
        print("                     (XLA:GPU undercounts convolutions: "
              "JAX_PLATFORMS=cpu --compile_only gives the true figure)")
    if FLAGS.compile_only:
        return

    state = run(weights, lr, state, jnp.int32(1))  # warm-up (also the first real step)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    state = run(weights, lr, state, jnp.int32(FLAGS.steps))
    jax.block_until_ready(state)
    per_step = (time.perf_counter() - t0) / FLAGS.steps

    peak = matmul_peak(FLAGS.peak_n, FLAGS.precision)
    # XLA counts a while loop's body once, so a one-step call's FLOPs are one step's.
    achieved = flops_per_call / per_step
    print(f"time per step        {per_step * 1e3:.1f} ms")
    print(f"face-restart-steps/s {B / per_step:.3f}")
    print(f"achieved             {achieved / 1e9:.1f} GFLOP/s")
    print(f"matmul peak          {peak / 1e9:.1f} GFLOP/s ({FLAGS.peak_n}^2 float32, precision {FLAGS.precision})")
    print(f"fraction of peak     {achieved / peak:.1%}")


if __name__ == "__main__":
    app.run(main)
