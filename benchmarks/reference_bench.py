r"""Speed of one PULSE search step: the official PyTorch code next to ours, in one command.

Prints one row per model and restart count (the shipped 64x64 model at 1, 4 and 12 restarts,
the 1024 FFHQ architecture at 1 and 4): the median time per step of each implementation,
the ratio of the medians, our fraction of the machine's float32 matmul peak (measured in the
same run), and the first step (ours: tracing and compilation included). Then torch/jax
versions, thread counts and jax.devices(). The README's and docs/performance.md's speed
tables come from it:

  JAX_PLATFORMS=cpu python benchmarks/reference_bench.py --reference_dir=/path/to/pulse

  # one model, other restart counts, more repeats:
  python benchmarks/reference_bench.py --reference_dir=/path/to/pulse --models=shipped \
      --restarts=1,2,12 --repeats=5

Needs torch installed and a checkout of the official repository (github.com/adamian98/pulse);
neither is a dependency of pulse-jax. Its stylegan, bicubic, loss and SphericalOptimizer
modules are imported from --reference_dir at run time. Nothing is downloaded: both sides use
random weights (speed does not depend on them), except that "shipped" is our bundled
checkpoint on our side. The reference runs on torch's CPU; ours on jax.devices()[0], so set
JAX_PLATFORMS=cpu for a same-hardware comparison. 1024 at 12 restarts is left out by default:
one reference step takes about 45 s there (--restarts_1024=1,4,12 asks for it).

Each implementation runs in a process of its own, one per model and repeat, the two
alternating (ours first in even repeats, the reference first in odd ones), and every figure
is the median over the repeats of each process's median step. Separate processes because
torch's OpenMP threads slow XLA:CPU in the same process (seen: 1.41 s per 1024 step alone,
1.78 s after a reference run); alternation and medians because torch's threads stall when
another process holds a core (seen on a busy 2-core machine: 0.02 s steps turning into
2 s): measure on a quiet machine, or set --threads below the free cores.
"""


import json
import os
import statistics
import subprocess
import sys
import time

from absl import app, flags
import jax
import numpy as np

import pulse_jax
from timing import matmul_peak, time_upsample

FLAGS = flags.FLAGS
flags.DEFINE_string("reference_dir", None, "checkout of adamian98/pulse (not needed for --worker=ours)")
flags.DEFINE_list("models", ["shipped", "ffhq1024"],
                  "shipped: the bundled 64x64 checkpoint's config; ffhq1024: GeneratorConfig() defaults")
flags.DEFINE_list("restarts", ["1", "4", "12"], "restart counts for the shipped model (one face each)")
flags.DEFINE_list("restarts_1024", ["1", "4"], "restart counts for ffhq1024")
flags.DEFINE_integer("steps", 10, "timed steps after a warm-up step, shipped model")
flags.DEFINE_integer("steps_1024", 3, "timed steps after a warm-up step, ffhq1024")
flags.DEFINE_integer("repeats", 3, "processes per implementation and model, alternating")
flags.DEFINE_integer("threads", os.cpu_count(), "torch.set_num_threads")
flags.DEFINE_enum("which", "both", ["both", "reference", "ours"], "implementations to time")
flags.DEFINE_enum("worker", None, ["reference", "ours"],
                  "internal: time one implementation for --model in this process, print JSON")
flags.DEFINE_enum("model", "shipped", ["shipped", "ffhq1024"], "internal: the worker's model")
flags.DEFINE_integer("peak_n", 2048, "matrix side for the matmul peak")

REF_MODULES = ("stylegan", "bicubic", "loss", "SphericalOptimizer")


def import_reference(path: str) -> dict:
    """Imports torch and the official modules, with errors that say what is missing."""
    try:
        import torch
    except ImportError as e:
        raise SystemExit(f"torch is not installed ({e}); pip install torch to run the reference") from e
    missing = [m for m in REF_MODULES if not os.path.isfile(os.path.join(path, m + ".py"))]
    if missing:
        raise SystemExit(f"--reference_dir={path} lacks {', '.join(m + '.py' for m in missing)}; "
                         "point it at a checkout of github.com/adamian98/pulse")
    sys.path.insert(0, os.path.abspath(path))
    import stylegan, bicubic, loss, SphericalOptimizer  # noqa: E401  (the official modules)
    return dict(torch=torch, stylegan=stylegan, bicubic=bicubic, loss=loss,
                SphericalOptimizer=SphericalOptimizer)


def reference_steps(ref: dict, cfg: pulse_jax.GeneratorConfig, lr_size: int, batch: int,
                    steps: int) -> tuple[float, list[float]]:
    """Runs 1 + steps iterations of the official PULSE.forward loop; returns their times."""
    torch = ref["torch"]
    torch.manual_seed(0)
    L, D, res = cfg.num_layers, cfg.dlatent_size, cfg.resolution
    factor = res // lr_size
    # Built by hand: PULSE.__init__ calls .cuda() and downloads weights.
    synthesis = ref["stylegan"].G_synthesis(dlatent_size=D, resolution=res, fmap_base=cfg.fmap_base,
                                            fmap_max=cfg.fmap_max, fmap_decay=cfg.fmap_decay)
    for p in synthesis.parameters():
        p.requires_grad = False
    lrelu = torch.nn.LeakyReLU(negative_slope=0.2)
    fit = {"mean": torch.randn(D), "std": torch.rand(D) + 0.5}
    ref_im = torch.rand(batch, 3, lr_size, lr_size)
    down = ref["bicubic"].BicubicDownSample(factor=factor, cuda=False)

    latent = torch.randn((batch, L, D), dtype=torch.float, requires_grad=True)
    noise, noise_vars = [], []  # PULSE's defaults: trainable, 5 optimized, last layer zero
    for i in range(L):
        shape = (batch, 1, 2**(i // 2 + 2), 2**(i // 2 + 2))
        if i == L - 1:
            noise.append(torch.zeros(shape))
        else:
            n = torch.randn(shape)
            if i < 5:
                n.requires_grad = True
                noise_vars.append(n)
            noise.append(n)
    opt = ref["SphericalOptimizer"].SphericalOptimizer(torch.optim.Adam, [latent] + noise_vars, lr=0.4)
    total = 100  # the reference's default steps, for its schedule
    sched = lambda x: ((9 * (1 - np.abs(x / (0.9 * total) - 1 / 2) * 2) + 1) / 10 if x < 0.9 * total
                       else 1 / 10 + (x - 0.9 * total) / (0.1 * total) * (1 / 1000 - 1 / 10))
    scheduler = torch.optim.lr_scheduler.LambdaLR(opt.opt, sched)

    if (res, L, D) == (1024, 18, 512):
        builder = ref["loss"].LossBuilder(ref_im, "100*L2+0.05*GEOCROSS", 2e-3)
        builder.D = down  # its own BicubicDownSample defaults to cuda=True
        loss_fn = builder
    else:
        # LossBuilder hard-codes 1024 px and 18 x 512 rows: the same two terms with the
        # official formulas, generalised to L rows of width D.
        def loss_fn(w, im):
            l2 = (down(im) - ref_im).pow(2).mean((1, 2, 3)).clamp(min=2e-3).sum()
            X, Y = w.view(-1, 1, L, D), w.view(-1, L, 1, D)
            A = ((X - Y).pow(2).sum(-1) + 1e-9).sqrt()
            B = ((X + Y).pow(2).sum(-1) + 1e-9).sqrt()
            geo = (((2 * torch.atan2(A, B)).pow(2) * D).mean((1, 2)) / 8.).sum()
            return 100 * l2 + 0.05 * geo, {"L2": l2, "GEOCROSS": geo}

    times, min_loss, min_l2 = [], np.inf, np.inf
    for _ in range(steps + 1):
        t0 = time.perf_counter()
        opt.opt.zero_grad()
        latent_in = lrelu(latent * fit["std"] + fit["mean"])
        gen_im = (synthesis(latent_in, noise) + 1) / 2
        loss, loss_dict = loss_fn(latent_in, gen_im)
        if loss < min_loss:
            min_loss = loss
            best_im = gen_im.clone()  # noqa: F841  (PULSE keeps the best image)
        if loss_dict["L2"] < min_l2:
            min_l2 = loss_dict["L2"]
        loss.backward()
        opt.step()
        scheduler.step()
        times.append(time.perf_counter() - t0)
    return times[0], times[1:]


def ours_steps(gen: pulse_jax.Generator, lr_size: int, restarts: int,
               steps: int) -> tuple[float, list[float]]:
    lr = np.random.default_rng(0).uniform(size=(1, lr_size, lr_size, 3)).astype(np.float32)
    return time_upsample(gen, lr, pulse_jax.SearchConfig(steps=steps + 1, restarts=restarts))


def step_flops(gen: pulse_jax.Generator, lr_size: int, restarts: int) -> float:
    """XLA's FLOP count of the step program ``upsample`` ran (its HLO before optimization)."""
    from pulse_jax.search import stages as stages_lib
    from pulse_jax.search.steps import Spec, restart_keys
    cfg = gen.config
    spec = Spec.make(cfg, pulse_jax.SearchConfig(restarts=restarts), cfg.resolution // lr_size)
    stages = stages_lib.build(spec, None, restarts)
    state = stages.init(*stages.draw(restart_keys(0, [0], restarts)))
    lr = np.zeros((restarts, lr_size, lr_size, 3), np.float32)
    cost = stages.step.lower(stages.prepare(gen), lr, state).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def model_setup(model: str) -> tuple[pulse_jax.GeneratorConfig, int, list[int], int]:
    """(config, LR side, restart counts, timed steps) of a model name."""
    if model == "shipped":
        return (pulse_jax.default_generator().config, 8, [int(r) for r in FLAGS.restarts],
                FLAGS.steps)
    return pulse_jax.GeneratorConfig(), 32, [int(r) for r in FLAGS.restarts_1024], FLAGS.steps_1024


def worker(which: str, model: str) -> dict:
    """Times one implementation on one model, every restart count, in this process."""
    cfg, lr_size, restarts, steps = model_setup(model)
    out = {"rows": {}}
    if which == "ours":
        D = cfg.dlatent_size
        gen = (pulse_jax.default_generator() if model == "shipped" else
               pulse_jax.random_generator(cfg, jax.random.PRNGKey(0), with_mapping=False)
               .replace_gaussian_fit(np.zeros(D, np.float32), np.ones(D, np.float32)))
        for r in restarts:
            first, later = ours_steps(gen, lr_size, r, steps)
            out["rows"][r] = {"first": first, "median": statistics.median(later),
                              "flops": step_flops(gen, lr_size, r)}
        out["peak"] = matmul_peak(FLAGS.peak_n)
        out["versions"] = (f"jax {jax.__version__}, devices {jax.devices()}, host malloc "
                           f"{pulse_jax.host_memory.state()['mode']}")
    else:
        ref = import_reference(FLAGS.reference_dir)
        ref["torch"].set_num_threads(FLAGS.threads)
        for r in restarts:
            # The reference's batch of R independent latents = R restarts of one face in ours.
            first, later = reference_steps(ref, cfg, lr_size, r, steps)
            out["rows"][r] = {"first": first, "median": statistics.median(later)}
        out["versions"] = (f"torch {ref['torch'].__version__}, threads "
                           f"{ref['torch'].get_num_threads()} (os.cpu_count() {os.cpu_count()}), "
                           f"host malloc {pulse_jax.host_memory.state()['mode']}")
    return out


def run_worker(which: str, model: str) -> dict:
    """:func:`worker` in a fresh process (this script with --worker); its JSON result."""
    keep = [a for a in sys.argv[1:] if not a.startswith(("--worker", "--model="))]
    cmd = [sys.executable, os.path.abspath(__file__), f"--worker={which}", f"--model={model}"] + keep
    # The reference as its users run it: this script imports pulse_jax, whose import would
    # otherwise tune the torch process's malloc too (pulse_jax.host_memory; it speeds torch
    # up as well, at 1024 by about as much as ours).
    env = dict(os.environ, PULSE_JAX_HOST_MALLOC="system") if which == "reference" else None
    done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.worker:
        print(json.dumps(worker(FLAGS.worker, FLAGS.model)), flush=True)
        return
    impls = ["ours", "reference"] if FLAGS.which == "both" else [FLAGS.which]
    if "reference" in impls and not FLAGS.reference_dir:
        raise SystemExit("--reference_dir is required to time the reference (or --which=ours)")
    runs = {}  # (model, impl) -> [worker results, one per repeat]
    for rep in range(FLAGS.repeats):
        for model in FLAGS.models:
            for impl in impls if rep % 2 == 0 else impls[::-1]:
                runs.setdefault((model, impl), []).append(run_worker(impl, model))
                print(f"repeat {rep + 1}/{FLAGS.repeats}: {model} {impl} done", file=sys.stderr,
                      flush=True)

    med = statistics.median
    print(f"{FLAGS.repeats} repeat(s), each the median of its timed steps after one warm-up "
          f"step; figures are medians over the repeats")
    for impl in impls:
        print(runs[FLAGS.models[0], impl][0]["versions"])
    peaks = [r["peak"] for m in FLAGS.models for r in runs.get((m, "ours"), [])]
    if peaks:
        print(f"float32 matmul peak ({FLAGS.peak_n}^2, ours' processes): {med(peaks) / 1e9:.1f} "
              f"GFLOP/s (median; range {min(peaks) / 1e9:.1f}-{max(peaks) / 1e9:.1f})")
    print(f"{'model':9} {'restarts':>8} {'reference s/step':>17} {'ours s/step':>12} {'ratio':>6} "
          f"{'ours GFLOP':>11} {'% of peak':>9} {'first step ref / ours s':>24}")
    for model in FLAGS.models:
        cfg, lr_size, restarts, steps = model_setup(model)
        print(f"# {model}: {cfg.resolution}px, {cfg.num_layers} x {cfg.dlatent_size} latent, "
              f"widths {cfg.widths}, LR {lr_size} (x{cfg.resolution // lr_size}), "
              f"{steps} timed steps")
        for r in restarts:
            cell = {impl: [run["rows"][str(r)] for run in runs[model, impl]] for impl in impls}
            t = {impl: med([c["median"] for c in rows]) for impl, rows in cell.items()}
            first = {impl: med([c["first"] for c in rows]) for impl, rows in cell.items()}
            ref_s = f"{t['reference']:.4f}" if "reference" in t else "-"
            ours_s = f"{t['ours']:.4f}" if "ours" in t else "-"
            ratio = f"{t['reference'] / t['ours']:.2f}x" if len(t) == 2 else "-"
            flops = f"{cell['ours'][0]['flops'] / 1e9:.2f}" if "ours" in t else "-"
            frac = f"{cell['ours'][0]['flops'] / t['ours'] / med(peaks):.0%}" if "ours" in t else "-"
            firsts = " / ".join(f"{first[i]:.2f}" if i in first else "-" for i in ("reference", "ours"))
            print(f"{model:9} {r:>8} {ref_s:>17} {ours_s:>12} {ratio:>6} {flops:>11} {frac:>9} "
                  f"{firsts:>24}", flush=True)


if __name__ == "__main__":
    app.run(main)
