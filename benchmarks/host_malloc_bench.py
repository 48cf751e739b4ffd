r"""What pulse_jax.host_memory does to a search step: the same step timed in fresh processes
with ``PULSE_JAX_HOST_MALLOC=keep`` (the default) and ``=system``, alternating.

  JAX_PLATFORMS=cpu python benchmarks/host_malloc_bench.py            # shipped model, 1/4/12
  JAX_PLATFORMS=cpu python benchmarks/host_malloc_bench.py --model=ffhq1024 --restarts=1 --steps=4

Per mode and restart count: the median step time over the repeats (each a process's median
of its steady steps), and per steady step the minor page faults and the system (kernel) CPU
time, from ``getrusage`` around the timed steps. docs/performance.md ("The host's
allocator") quotes it.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_enum("model", "shipped", ["shipped", "ffhq1024"], "the shipped 64x64 model or the "
                  "1024 architecture (random weights)")
flags.DEFINE_list("restarts", ["1", "4", "12"], "restart counts (one face each)")
flags.DEFINE_integer("steps", 20, "steps per search; the first two are not counted")
flags.DEFINE_integer("repeats", 2, "processes per mode, alternating")
flags.DEFINE_string("worker", None, "internal: time this process's mode, print JSON")


def worker() -> dict:
    import numpy as np
    import jax
    import pulse_jax
    if FLAGS.model == "shipped":
        gen, lr_side = pulse_jax.default_generator(), 8
    else:
        cfg = pulse_jax.GeneratorConfig()
        gen = (pulse_jax.random_generator(cfg, jax.random.PRNGKey(0), with_mapping=False)
               .replace_gaussian_fit(np.zeros(cfg.dlatent_size, np.float32),
                                     np.ones(cfg.dlatent_size, np.float32)))
        lr_side = 32
    lr = np.random.default_rng(0).uniform(size=(1, lr_side, lr_side, 3)).astype(np.float32)
    out = {"state": pulse_jax.host_memory.state(), "rows": {}}
    for r in [int(x) for x in FLAGS.restarts]:
        marks = []

        def on_step(p):
            u = resource.getrusage(resource.RUSAGE_SELF)
            marks.append((time.perf_counter(), u.ru_minflt, u.ru_stime))

        pulse_jax.upsample(gen, lr, pulse_jax.SearchConfig(steps=FLAGS.steps, restarts=r,
                                                           chunk_steps=1), progress=on_step)
        (t0, f0, s0), (t1, f1, s1) = marks[2], marks[-1]
        n = len(marks) - 3
        steps = np.diff([m[0] for m in marks[2:]])
        out["rows"][str(r)] = {"median_s": float(np.median(steps)),
                               "faults": (f1 - f0) / n, "sys_s": (s1 - s0) / n}
    return out


def main(argv):
    del argv
    if FLAGS.worker:
        print(json.dumps(worker()))
        return
    runs = {"keep": [], "system": []}
    for rep in range(FLAGS.repeats):
        for mode in (("keep", "system") if rep % 2 == 0 else ("system", "keep")):
            env = dict(os.environ, PULSE_JAX_HOST_MALLOC=mode)
            args = [a for a in sys.argv[1:] if not a.startswith("--worker")]
            done = subprocess.run([sys.executable, os.path.abspath(__file__), f"--worker={mode}"]
                                  + args, env=env, stdout=subprocess.PIPE, text=True, check=True)
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
    med = statistics.median
    print(f"{FLAGS.model}, {FLAGS.repeats} process(es) per mode, {FLAGS.steps} steps each; "
          f"medians; keep: {runs['keep'][0]['state']}")
    print(f"{'restarts':>8} {'mode':>7} {'s/step':>8} {'page faults/step':>17} {'sys s/step':>11}")
    for r in FLAGS.restarts:
        for mode, rows in runs.items():
            cells = [run["rows"][r] for run in rows]
            print(f"{r:>8} {mode:>7} {med(c['median_s'] for c in cells):8.4f} "
                  f"{med(c['faults'] for c in cells):17.0f} {med(c['sys_s'] for c in cells):11.4f}")


if __name__ == "__main__":
    app.run(main)
