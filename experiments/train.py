r"""Train a StyleGAN v1 generator for pulse-jax, then export it as a searchable checkpoint.

Usage (from the repository root)::

  python experiments/train.py --config=experiments/configs/train_utkface64.py \
      --workdir=runs/train_utkface64 [--config.steps=N --config.FIELD=VALUE ...]
  python experiments/train.py --config=experiments/configs/train_tiny.py \
      --workdir=/tmp/tiny --config.data.path=/tmp/toy_images

The run resumes automatically from the newest checkpoint in ``--workdir`` (bit-identically,
with the same config, data and devices); raise ``--config.steps`` to train further. It
writes ``{workdir}/checkpoints/ckpt_*/`` (orbax folders with no file over
``--config.checkpoint_max_file_mib`` MiB, so a run can move between machines in pieces),
sample grids ``{workdir}/samples/*.png`` (the EMA generator on fixed latents),
``{workdir}/config.json`` and, when done, the exported generator ``{workdir}/generator`` (or
``--config.export.path``), which ``pulse-jax upsample --checkpoint=...`` reads like a
converted one. The progress bar shows images/s and the latest losses (``d``: D's logistic
loss, ``g``: G's, ``r1``: the mean squared gradient norm, ``acc``: D's accuracy on the
batch). ``--config.max_seconds=S`` stops after S seconds of wall clock (checkpointing and
exporting what it has), for sessions of bounded length; ``--config.progress=False`` logs a
line with images/s every ``log_every`` steps instead of the bar.
"""

from __future__ import annotations

import json
import logging as std_logging
import pathlib
import time

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Training config (.py with get_config()); override with --config.FIELD=V.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Checkpoints, samples and the export go here.")
flags.mark_flags_as_required(["config", "workdir"])

_REPO = pathlib.Path(__file__).resolve().parents[1]


class QuietOrbax(std_logging.Filter):
    """Drops orbax's records below ERROR: a report of every save at INFO, and at WARNING a
    note that every save without OCDBT gets (nothing to merge)."""

    def filter(self, record: std_logging.LogRecord) -> bool:
        return record.levelno >= std_logging.ERROR or "orbax" not in record.pathname


def data_path(path: str) -> pathlib.Path:
    """``path`` as given, else relative to the repository root (for the configs' defaults)."""
    if not path:
        raise app.UsageError("no training data: set --config.data.path=FOLDER_OR_ZIP")
    p = pathlib.Path(path).expanduser()
    if not p.exists() and not p.is_absolute() and (_REPO / p).exists():
        p = _REPO / p
    if not p.exists():
        raise app.UsageError(f"training data {path} not found")
    return p


def run(cfg, workdir: pathlib.Path) -> None:
    """Load the data, train (resuming), export."""
    import jax
    from tqdm import tqdm

    from pulse_jax.train import (MAX_FILE_BYTES, BatchStream, TrainConfig, batch_mesh,
                                 export_generator, load_images, train)
    from pulse_jax.weights.checkpoint import CheckpointError, read_manifest

    tcfg = TrainConfig.from_run_config(cfg)
    mesh = batch_mesh(int(cfg.devices))
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1, default=str))

    path = data_path(cfg.data.path)
    logging.info("decoding %s ...", path)
    data = load_images(path, tcfg.generator.resolution, int(cfg.data.max_images) or None)
    logging.info("%d images of %dx%d (%d resized, %d skipped) on %d %s device(s)", len(data),
                 data.resolution, data.resolution, data.resized, len(data.skipped), mesh.size,
                 mesh.devices.flat[0].platform)
    stream = BatchStream(data, tcfg.batch_size, seed=tcfg.seed, flip=bool(cfg.data.flip))

    B, steps, every = tcfg.batch_size, int(cfg.steps), max(1, int(cfg.log_every))
    bars = []

    def on_start(step, ckpt):
        if ckpt is not None:
            logging.info("resumed from %s (step %d)", ckpt, step)
        # images/s counts from here; the first step's rate includes compilation
        bars.append(tqdm(total=steps * B, initial=min(step, steps) * B, unit="img",
                         dynamic_ncols=True, disable=not cfg.progress, smoothing=0.1))

    last_log = []

    def on_step(step, metrics, last):
        bar = bars[0]
        bar.update(B)
        if step % every == 0 or last:
            m = jax.device_get(metrics)
            now = time.time()
            # The training curve: one JSON line per log interval, appended as training goes.
            with open(workdir / "metrics.jsonl", "a") as f:
                f.write(json.dumps({"step": step, "images": step * B, "time": now,
                                    **{k: float(v) for k, v in m.items()}}) + "\n")
            if not cfg.progress:  # a log line instead of the bar (logs of batch jobs)
                rate = ((step - last_log[0][0]) * B / (now - last_log[0][1])
                        if last_log else float("nan"))
                logging.info("step %d  %d img  %.0f img/s  d %.3f  g %.3f  r1 %.3g  acc %.2f",
                             step, step * B, rate, m["d_loss"], m["g_loss"], m["r1_penalty"],
                             m["d_accuracy"])
                last_log[:] = [(step, now)]
            bar.set_postfix(step=step, d=f"{m['d_loss']:.3f}", g=f"{m['g_loss']:.3f}",
                            r1=f"{m['r1_penalty']:.3g}", acc=f"{m['d_accuracy']:.2f}",
                            refresh=False)

    state = train(tcfg, stream, workdir, steps=steps,
                  checkpoint_every=int(cfg.checkpoint_every),
                  keep_checkpoints=int(cfg.keep_checkpoints),
                  sample_every=int(cfg.sample_every), sample_count=int(cfg.sample_count),
                  mesh=mesh, on_step=on_step, on_start=on_start,
                  checkpoint_extra={"config": json.loads(json.dumps(cfg.to_dict(), default=str))},
                  checkpoint_max_file_bytes=int(float(cfg.get("checkpoint_max_file_mib", 0))
                                                * 2 ** 20) or MAX_FILE_BYTES,  # 0: the default
                  max_seconds=float(cfg.get("max_seconds", 0)) or None)
    for bar in bars:
        bar.close()
    if int(state.step) < steps:
        logging.info("stopped at step %d of %d: --config.max_seconds=%s reached (run again "
                     "to continue)", int(state.step), steps, cfg.max_seconds)

    if not cfg.export.enabled:
        return
    out = pathlib.Path(cfg.export.path or workdir / "generator").expanduser()
    step = int(state.step)
    try:
        if read_manifest(out).get("training", {}).get("step") == step:
            logging.info("%s already holds the generator of step %d", out, step)
            return
    except CheckpointError:
        pass
    logging.info("exporting the EMA generator (Gaussian fit of %d samples) to %s",
                 int(cfg.export.fit_samples), out)
    export_generator(state, tcfg, out, fit_samples=int(cfg.export.fit_samples),
                     dtype=str(cfg.export.dtype), licence=cfg.licence or None,
                     training={"data": str(cfg.data.path), "images": len(data),
                               "flip": bool(cfg.data.flip), "devices": mesh.size})
    logging.info("exported %s", out)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    std_logging.getLogger("absl").addFilter(QuietOrbax())
    run(_CONFIG.value, pathlib.Path(_WORKDIR.value).expanduser())


if __name__ == "__main__":
    app.run(main)
