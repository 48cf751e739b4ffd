r"""Speed of one PULSE search step: the official PyTorch code next to ours, in the same run.

Prints, for each restart count, the first step (ours: tracing and compilation included) and
the median time of the later steps of each implementation, face-restart-steps per second,
and the ratio of the medians; then torch/jax versions, thread counts and jax.devices().

  python benchmarks/reference_bench.py --reference_dir=/path/to/pulse --model=ffhq1024 \
      --restarts=1,4 --steps=3
  python benchmarks/reference_bench.py --reference_dir=/path/to/pulse --model=shipped \
      --restarts=1,2 --steps=2

Needs torch installed and a checkout of the official repository (github.com/adamian98/pulse);
neither is a dependency of pulse-jax. Its stylegan, bicubic, loss and SphericalOptimizer
modules are imported from --reference_dir at run time. Nothing is downloaded: both sides use
random weights (speed does not depend on them). The reference runs on torch's CPU; ours on
jax.devices()[0], so set JAX_PLATFORMS=cpu for a same-hardware comparison.

Ours runs first, all restart counts, before torch is even imported: once torch's OpenMP
threads exist they slow XLA:CPU in the same process (seen: 1.41 s per 1024 step alone, 1.78 s
after a reference run). torch's threads in turn stall when another process holds a core
(seen on a busy 2-core machine: 0.02 s steps turning into 2 s); measure on a quiet machine,
or set --threads below the free cores.
"""

import os
import statistics
import sys
import time

from absl import app, flags
import jax
import numpy as np

import pulse_jax
from timing import time_upsample

FLAGS = flags.FLAGS
flags.DEFINE_string("reference_dir", None, "checkout of adamian98/pulse", required=True)
flags.DEFINE_enum("model", "ffhq1024", ["ffhq1024", "shipped"],
                  "ffhq1024: GeneratorConfig() defaults; shipped: the bundled checkpoint's config")
flags.DEFINE_integer("lr_size", None, "LR side (default 32 for ffhq1024, 8 for shipped)")
flags.DEFINE_list("restarts", ["1", "4"], "restart counts (one face each)")
flags.DEFINE_integer("steps", 3, "timed steps after a warm-up step")
flags.DEFINE_integer("threads", os.cpu_count(), "torch.set_num_threads")
flags.DEFINE_enum("which", "both", ["both", "reference", "ours"], "implementations to time")

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


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.model == "shipped":
        shipped = pulse_jax.default_generator()
        cfg, lr_size = shipped.config, FLAGS.lr_size or 8
    else:
        shipped, cfg, lr_size = None, pulse_jax.GeneratorConfig(), FLAGS.lr_size or 32
    if cfg.resolution % lr_size:
        raise SystemExit(f"--lr_size={lr_size} does not divide the resolution {cfg.resolution}")
    restarts = [int(r) for r in FLAGS.restarts]
    gen = None
    if FLAGS.which != "reference":
        D = cfg.dlatent_size
        gen = shipped or pulse_jax.random_generator(cfg, jax.random.PRNGKey(0), with_mapping=False
                                                    ).replace_gaussian_fit(np.zeros(D, np.float32),
                                                                           np.ones(D, np.float32))

    # Ours first, all of it, before torch is imported (see the module doc).
    results = {}
    if FLAGS.which != "reference":
        for r in restarts:
            results[r, "ours"] = ours_steps(gen, lr_size, r, FLAGS.steps)
    ref = import_reference(FLAGS.reference_dir) if FLAGS.which != "ours" else None
    if ref is not None:
        ref["torch"].set_num_threads(FLAGS.threads)
        for r in restarts:
            # The reference's batch of R independent latents = R restarts of one face in ours.
            results[r, "reference"] = reference_steps(ref, cfg, lr_size, r, FLAGS.steps)

    print(f"model {FLAGS.model}: {cfg.resolution}px, {cfg.num_layers} x {cfg.dlatent_size} latent, "
          f"widths {cfg.widths}, LR {lr_size} (x{cfg.resolution // lr_size}); "
          f"{FLAGS.steps} timed steps after one warm-up")
    if ref is not None:
        print(f"torch {ref['torch'].__version__}, threads {ref['torch'].get_num_threads()} "
              f"(os.cpu_count() {os.cpu_count()})")
    print(f"jax {jax.__version__}, devices {jax.devices()}")
    print(f"{'model':9} {'restarts':>8} {'impl':>10} {'first step s':>13} "
          f"{'s/step (median)':>16} {'face-restart-steps/s':>21}")
    for r in restarts:
        medians = {}
        for name in ("reference", "ours"):
            if (r, name) not in results:
                continue
            first, later = results[r, name]
            medians[name] = statistics.median(later)
            print(f"{FLAGS.model:9} {r:>8} {name:>10} {first:>13.3f} "
                  f"{medians[name]:>16.4f} {r / medians[name]:>21.2f}", flush=True)
        if len(medians) == 2:
            print(f"speedup ours vs reference: {medians['reference'] / medians['ours']:.2f}x")


if __name__ == "__main__":
    app.run(main)
