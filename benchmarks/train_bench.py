r"""Speed of the GAN train step: compile time and images/s per compute dtype.

For a training config (``experiments/configs/*.py``), compiles the train step that
``experiments/train.py`` would run and times it on random uint8 batches (speed does not
depend on the data), once per ``--dtypes`` entry, so float32 and bfloat16 are compared on the
same machine in one run.

  python benchmarks/train_bench.py --train_config=experiments/configs/train_utkface64.py \
      --dtypes=float32,bfloat16 --steps=20
  python benchmarks/train_bench.py --train_config=experiments/configs/train_tiny.py --steps=5
"""

import importlib.util
import time

from absl import app, flags
import jax
import numpy as np

from pulse_jax import train as trainer

FLAGS = flags.FLAGS
flags.DEFINE_string("train_config", "experiments/configs/train_utkface64.py", "training config file")
flags.DEFINE_list("dtypes", ["float32", "bfloat16"], "compute dtypes to time")
flags.DEFINE_integer("batch_size", 0, "global batch; 0 = the config's")
flags.DEFINE_integer("r1_interval", 0, "R1 interval; 0 = the config's (lazy R1 times both "
                     "step variants in their proportion)")
flags.DEFINE_integer("steps", 20, "timed steps (after two warm-up steps)")
flags.DEFINE_integer("devices", 0, "devices; 0 = the config's")


def load_config(path: str):
    spec = importlib.util.spec_from_file_location("train_config_file", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.get_config()


def main(argv):
    del argv

    cfg = load_config(FLAGS.train_config)
    if FLAGS.batch_size:
        cfg.batch_size = FLAGS.batch_size
    if FLAGS.r1_interval:
        cfg.r1_interval = FLAGS.r1_interval
    mesh = trainer.batch_mesh(FLAGS.devices or int(cfg.devices))
    dev = mesh.devices.flat[0]
    rows = []
    for dtype in FLAGS.dtypes:
        cfg.compute_dtype = dtype
        tcfg = trainer.TrainConfig.from_run_config(cfg)
        B, g = tcfg.batch_size, tcfg.generator
        step_fn = trainer.make_train_step(tcfg, mesh)
        state = trainer.replicate(trainer.init_state(tcfg), mesh)
        rng = np.random.default_rng(0)
        batches = [trainer.shard_batch(rng.integers(0, 256, (B, g.resolution, g.resolution, 3),
                                                    dtype=np.uint8), mesh) for _ in range(4)]
        t0 = time.perf_counter()
        for i in range(2):  # compiles every variant the run uses (lazy R1: with and without)
            state, metrics = step_fn(state, batches[i], i + tcfg.r1_interval - 1)
        jax.block_until_ready(metrics)
        warm_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i in range(FLAGS.steps):
            state, metrics = step_fn(state, batches[i % len(batches)], i)
        m = jax.device_get(metrics)
        dt = (time.perf_counter() - t0) / FLAGS.steps
        finite = all(np.isfinite(v) for v in m.values())
        rows.append((dtype, B, warm_s, dt * 1e3, B / dt, finite))
        print(f"{dtype:9s} batch {B:4d}  compile+2 steps {warm_s:6.1f} s  "
              f"{dt * 1e3:8.2f} ms/step  {B / dt:9.1f} img/s  losses finite: {finite}",
              flush=True)
        del state, metrics

    print(f"\ndevice {dev.platform} {getattr(dev, 'device_kind', '')} x{mesh.size}; "
          f"config {FLAGS.train_config}; generator widths {g.widths}; R1 every {tcfg.r1_interval}")
    print("| compute dtype | batch | compile + 2 steps (s) | ms/step | images/s |")
    print("| --- | --- | --- | --- | --- |")
    for dtype, B, warm_s, ms, ips, _ in rows:
        print(f"| {dtype} | {B} | {warm_s:.1f} | {ms:.2f} | {ips:.1f} |")


if __name__ == "__main__":
    app.run(main)
