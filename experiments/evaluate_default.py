r"""Evidence for a shipped face model: samples, PULSE on held-out faces, the training curve.

  python experiments/evaluate_default.py --checkpoint=pulse_jax/checkpoints/utkface64 \
      --data=path/to/utkface64.zip --held_out=300 --faces=100 \
      --workdir=runs/gpu_session --output_dir=runs/eval_utkface64 \
      --evidence_dir=checkpoints/utkface64_evidence

Held-out faces are the last ``--held_out`` images of the data by sorted name (the training
config leaves them out). Each is downscaled x8 with the reference's bicubic operator and
stored as an 8-bit PNG would be (truncated), then upsampled with PULSE's defaults. Prints the
success rate at eps and the l2 statistics, and writes:

* ``{evidence_dir}/samples.png``: 64 random faces of the model (our own images);
* ``{evidence_dir}/pulse_generated.png``: PULSE on faces the model itself generated
  (8x8 input | PULSE output | the generated face), safe to commit;
* ``{evidence_dir}/training_curve.png`` from ``{workdir}/metrics.jsonl``;
* ``{evidence_dir}/evaluation.json``: the figures;
* ``{output_dir}/pulse_heldout.png``: input | output | ground truth for held-out faces. It
  shows UTKFace images (non-commercial research data) and so stays out of the repository.
"""

import json
import pathlib

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image, ImageDraw

import pulse_jax
from pulse_jax import degrade, images
from pulse_jax.train import load_images
from pulse_jax.pictures import image_grid
from pulse_jax.weights.checkpoint import read_manifest

FLAGS = flags.FLAGS
flags.DEFINE_string("checkpoint", "pulse_jax/checkpoints/utkface64", "the model to evaluate")
flags.DEFINE_string("data", ".data/utkface64.zip",
                    "training data (zip or folder; .data/ is ignored by git)")
flags.DEFINE_integer("held_out", 300, "last N images by sorted name, never trained on")
flags.DEFINE_integer("faces", 100, "held-out faces to upsample")
flags.DEFINE_integer("factor", 8, "downscale factor of the LR inputs")
flags.DEFINE_integer("restarts", 1, "PULSE restarts per face")
flags.DEFINE_integer("steps", 100, "PULSE steps")
flags.DEFINE_integer("batch_size", 25, "faces per search call")
flags.DEFINE_string("workdir", "", "training workdir with metrics.jsonl (for the curve)")
flags.DEFINE_string("output_dir", "runs/eval_utkface64", "where non-committable outputs go")
flags.DEFINE_string("evidence_dir", "checkpoints/utkface64_evidence", "committable figures")


def lr_of(hr: np.ndarray, factor: int) -> np.ndarray:
    """PULSE's LR preparation: bicubic downscale, clamp, 8-bit truncation (docs/reference.md,
    "Preparing LR faces")."""
    lr = np.asarray(degrade.bicubic_downscale(jnp.asarray(hr), factor))
    return images.to_uint8(lr).astype(np.float32) / 255.0


def triptychs(lr, out, truth, size):
    """Rows of input (nearest-upscaled) | output | reference, ``size`` px tiles."""
    up = lambda x: np.repeat(np.repeat(x, size // x.shape[1], 1), size // x.shape[2], 2)
    rows = [np.concatenate([up(lr[i:i + 1])[0], out[i], truth[i]], axis=1) for i in range(len(lr))]
    return np.concatenate(rows, axis=0)


def curve_png(metrics, path, width=640, height=300):
    """The D and G losses against images seen, drawn with Pillow (no plotting library)."""
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    x = np.array([m["images"] for m in metrics], float)
    series = {"d_loss": ((200, 30, 30), [m["d_loss"] for m in metrics]),
              "g_loss": ((30, 30, 200), [m["g_loss"] for m in metrics])}
    ymax = max(max(v) for _, v in series.values())
    ymax = min(ymax, 10.0)
    L, B = 40, 30
    sx = lambda v: L + (v - x.min()) / max(x.max() - x.min(), 1) * (width - L - 10)
    sy = lambda v: height - B - min(v, ymax) / ymax * (height - B - 10)
    d.line([(L, 10), (L, height - B), (width - 10, height - B)], fill="black")
    for name, (color, ys) in series.items():
        k = max(1, len(ys) // 200)  # smooth a little: mean over k consecutive logs
        ys = np.convolve(ys, np.ones(k) / k, mode="valid")
        xs = x[k - 1:]
        d.line([(sx(a), sy(b)) for a, b in zip(xs, ys)], fill=color, width=2)
    d.text((L + 5, 12), f"red: D loss, blue: G loss (clipped at {ymax:.1f}); x: images seen, "
           f"0..{int(x.max()):,}", fill="black")
    for v in (0, ymax / 2, ymax):
        d.text((2, sy(v) - 5), f"{v:.1f}", fill="black")
    img.save(path)


def main(argv):
    del argv
    gen = pulse_jax.load_generator(FLAGS.checkpoint)
    ev, out_dir = pathlib.Path(FLAGS.evidence_dir), pathlib.Path(FLAGS.output_dir)
    ev.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = pulse_jax.SearchConfig(steps=FLAGS.steps, restarts=FLAGS.restarts)
    R = gen.resolution

    samples = np.asarray(gen.sample(jax.random.PRNGKey(0), 64))
    images.save_png(ev / "samples.png", image_grid(samples, 8, pad=2), rounding="round")

    # PULSE on the model's own faces: the targets are certainly in its range.
    own = np.asarray(gen.sample(jax.random.PRNGKey(1), 8))
    own_lr = lr_of(own, FLAGS.factor)
    own_res = pulse_jax.upsample(gen, own_lr, cfg, seed=0)
    images.save_png(ev / "pulse_generated.png", triptychs(own_lr, own_res.hr, own, R),
                    rounding="round")

    data = load_images(FLAGS.data, R)
    truth = data.images[-FLAGS.held_out:][: FLAGS.faces].astype(np.float32) / 255.0
    lr = lr_of(truth, FLAGS.factor)
    res = pulse_jax.upsample(gen, lr, cfg, seed=0, batch_size=FLAGS.batch_size)
    images.save_png(out_dir / "pulse_heldout.png", triptychs(lr[:8], res.hr[:8], truth[:8], R),
                    rounding="round")
    summary = {
        "checkpoint": str(FLAGS.checkpoint), "faces": int(len(lr)), "factor": FLAGS.factor,
        "lr_size": int(lr.shape[1]), "steps": FLAGS.steps, "restarts": FLAGS.restarts,
        "eps": cfg.eps, "success_rate": float(np.mean(res.success)),
        "l2_mean": float(np.mean(res.l2)), "l2_median": float(np.median(res.l2)),
        "l2_max": float(np.max(res.l2)),
        "own_faces_success_rate": float(np.mean(own_res.success)),
    }
    if FLAGS.workdir:
        mpath = pathlib.Path(FLAGS.workdir) / "metrics.jsonl"
        metrics = [json.loads(l) for l in mpath.read_text().splitlines() if l.strip()]
        curve_png(metrics, ev / "training_curve.png")
    training = read_manifest(FLAGS.checkpoint).get("training", {})
    summary.update(trained_steps=training.get("step"), trained_images=training.get("images_seen"))
    (ev / "evaluation.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    app.run(main)
