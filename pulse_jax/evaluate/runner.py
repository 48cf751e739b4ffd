"""``pulse_jax.evaluate.run``: ground-truth faces in; observations made, PULSE searched, and
every face measured against its truth and the baselines; records, summary and report out.

The output folder::

  run.json        the settings (a rerun with other settings is refused: use another folder)
  metrics.jsonl   one record per face, appended as each chunk of faces is done (resumable)
  summary.json    overall and per-group figures (:mod:`pulse_jax.evaluate.summary`)
  report.md       the tables and plots (:mod:`pulse_jax.evaluate.report`), plots/*.png
  faces/          {name}.png (PULSE), {name}_lr.png (the observation), {name}_bicubic.png,
                  {name}_nearest.png, {name}_restarts.png (every restart, side by side),
                  {name}_variability.png (with 2+ restarts), {name}_truth.png (only when the
                  truth was resized to the generator's resolution)

Every image is measured as written (8 bits), so ``identity_distance`` recomputes from the
files through :func:`pulse_jax.evaluate.identity_distance`.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Callable, Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from pulse_jax import degrade, files, folder_lock, images, inputs, pictures
from pulse_jax.batch import manifest
from pulse_jax.batch.progress import FaceBar
from pulse_jax.evaluate import identity, labels as labels_lib, measures, report, summary
from pulse_jax.generator import Generator
from pulse_jax.search import SearchConfig, upsample

__all__ = ["EvaluateOptions", "METRICS", "SUMMARY", "observe", "run"]

METRICS, SUMMARY, SETTINGS = "metrics.jsonl", "summary.json", "run.json"
PathLike = Union[str, pathlib.Path]


@dataclasses.dataclass(frozen=True)
class EvaluateOptions:
    """How :func:`run` makes observations and what it keeps.

    Attributes:
      lr_size: the observation's side for the default operator (0: the usual one for the
        generator, ``max(8, resolution // 32)``: 8 for the shipped 64x64 model, 32 for 1024).
      degradation: a :func:`pulse_jax.degrade.parse` string instead of the default, the
        reference's bicubic downscale to ``lr_size`` (noise in it is drawn per face from
        ``seed``; ``mask()`` needs per-face masks and is refused).
      labels: ``""`` none, ``"utkface"`` (labels from UTKFace file names) or a CSV path
        (:func:`pulse_jax.evaluate.labels.read_labels_csv`).
      seed: the search's seed (and the noise's).
      batch_size: faces per search call.
      save_restarts: write ``{name}_restarts.png``.
      progress: a progress bar on stderr.
    """

    lr_size: int = 0
    degradation: str = ""
    labels: str = ""
    seed: int = 0
    batch_size: int = 4
    save_restarts: bool = True
    progress: bool = True


def _operator(gen: Generator, options: EvaluateOptions) -> degrade.Operator:
    r = gen.config.resolution
    if options.degradation:
        op = degrade.parse(options.degradation)
        if degrade.has_placeholder(op):
            raise ValueError("evaluate makes its own observations: mask() needs a mask per "
                             "face and is not supported here")
    else:
        lr = options.lr_size or max(8, r // 32)
        if lr < 1 or r % lr:
            raise ValueError(f"lr_size {lr} does not divide the resolution {r}")
        op = degrade.downscale(r // lr, "bicubic")
    op.out_shape((1, r, r, 3))  # ValueError naming the problem
    return op


def observe(op: degrade.Operator, truth: np.ndarray, key: jax.Array) -> np.ndarray:
    """``[h, w, c]`` the observation of one truth ``[R, R, 3]``: ``op``, its noise drawn
    with ``key``, stored in 8 bits (truncated, as PULSE's LR files are)."""
    y = op(jnp.asarray(truth[None], jnp.float32))
    noise = [o for o in degrade.flatten(op) if isinstance(o, degrade.Noise)]
    if noise:
        y = noise[0].sample(key, y)
    return images.to_uint8(np.asarray(y)[0]).astype(np.float32) / 255.0


def _rgb(y: np.ndarray) -> np.ndarray:
    return np.repeat(y, 3, axis=-1) if y.shape[-1] == 1 else y


def _load_truth(path: pathlib.Path, r: int) -> tuple[np.ndarray, bool]:
    """The truth as uint8 ``[R, R, 3]`` and whether it was resized (Lanczos); ValueError for
    a non-square image."""
    x, _ = images.load_image(path)
    h, w = x.shape[:2]
    if h != w:
        raise ValueError(f"a truth face must be square (framed like the generator's faces), "
                         f"got {w}x{h}")
    u = images.to_uint8(x, "round")
    if h == r:
        return u, False
    return np.asarray(Image.fromarray(u).resize((r, r), Image.LANCZOS)), True


def _save(out: pathlib.Path, rel: str, u8: np.ndarray) -> str:
    images.save_png(out / rel, u8)
    return rel


def _measure(out: pathlib.Path, name: str, truth_u8: np.ndarray, obs: np.ndarray,
             op: degrade.Operator, hr_u8: np.ndarray, restarts_u8: Optional[np.ndarray]
             ) -> dict[str, Any]:
    """The record's measures of one searched face, from its written images."""
    truth = truth_u8.astype(np.float32) / 255
    try:
        t_desc, t_err = identity.face_descriptor(truth_u8), None
    except identity.FaceNotFoundError as e:
        t_desc, t_err = None, str(e)
    rec = {"truth_face_found": t_desc is not None,
           "truth_descriptor": None if t_desc is None else [round(float(v), 6) for v in t_desc]}

    def measured(u8: np.ndarray) -> dict[str, Any]:
        x = u8.astype(np.float32) / 255
        return {**measures.identity_of(u8, t_desc, t_err), **measures.image_quality(x, truth),
                "lr_psnr": measures.lr_psnr(op, x, obs)}

    rec.update(measured(hr_u8))
    rec["restart_identity_distance"] = measures.restart_identity(restarts_u8)
    rec["baselines"] = {}
    for b in measures.BASELINES:
        u8 = images.to_uint8(measures.baseline_upsample(obs, truth.shape[0], b), "round")
        rec["baselines"][b] = {"output": _save(out, f"faces/{name}_{b}.png", u8), **measured(u8)}
    return rec


def _settings(gen: Generator, op: degrade.Operator, config: SearchConfig,
              options: EvaluateOptions, checkpoint: str) -> dict[str, Any]:
    return {"checkpoint": checkpoint, "resolution": gen.config.resolution,
            "degradation": op.describe(), "labels": options.labels, "seed": options.seed,
            # What changes results, as the batch's config hash sees it: fields added later
            # at their defaults leave an older run resumable.
            "search": json.loads(json.dumps(manifest.hashed_search_fields(config), default=str)),
            "same_identity_threshold": identity.SAME_IDENTITY}


def _check_settings(out: pathlib.Path, settings: dict) -> None:
    path = out / SETTINGS
    if path.exists():
        old = json.loads(path.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise ValueError(f"{out} holds an evaluation with other settings ({', '.join(diff)}"
                             "); use another output folder, or the same settings to resume")
    else:
        files.atomic_write_text(path, json.dumps(settings, indent=1) + "\n")


def _face_record(out, name, path, group, truth_u8, resized, obs, op, res, i, keep_restarts):
    hr_u8 = images.to_uint8(res.hr[i])
    rec = {"name": name, "truth": str(path), **group,
           "output": _save(out, f"faces/{name}.png", hr_u8),
           "lr": _save(out, f"faces/{name}_lr.png", images.to_uint8(_rgb(obs))),
           "success": bool(res.success[i]), "l2": float(res.l2[i]),
           "restarts": int(res.restart_l2.shape[1])}
    if resized:
        rec["truth_resized"] = _save(out, f"faces/{name}_truth.png", truth_u8)
    restarts_u8 = images.to_uint8(res.restart_hr[i])
    if keep_restarts:
        rec["restarts_output"] = _save(out, f"faces/{name}_restarts.png",
                                       np.concatenate(list(restarts_u8), axis=1))
    if res.variability is not None:
        rec["variability"] = float(res.variability_score[i])
        rec["variability_output"] = _save(out, f"faces/{name}_variability.png",
                                          pictures.variability_pair(hr_u8, res.variability[i]))
    else:
        rec["variability"] = None
        rec["variability_note"] = "one restart: no spread to measure"
    rec.update(_measure(out, name, truth_u8, obs, op, hr_u8, restarts_u8))
    return rec


def run(generator: Generator, truth: Union[PathLike, Sequence[PathLike]], output_dir: PathLike,
        config: SearchConfig = SearchConfig(), options: EvaluateOptions = EvaluateOptions(), *,
        checkpoint: str = "", log: Callable[[str], None] = print) -> dict[str, Any]:
    """Evaluates PULSE on ground-truth faces (module doc) and returns the summary.

    Args:
      generator: the generator to search (with its Gaussian fit).
      truth: a folder, glob or list file of square faces framed like the generator's
        (resized to its resolution when they are not at it), or a list of paths.
      output_dir: the output folder (created); rerunning into it resumes.
      config: the search config (``keep_restart_images`` is turned on: the restarts are
        measured too).
      options: :class:`EvaluateOptions`.
      checkpoint: the generator's name or folder, recorded in ``run.json``.
      log: where messages go.

    Raises:
      ValueError: a bad option, or an output folder holding another evaluation.
      pulse_jax.images.ImageError: no truth images.
      pulse_jax.folder_lock.OutputBusyError: another run holds the output folder.
    """
    out = pathlib.Path(output_dir)
    op = _operator(generator, options)
    label_of = labels_lib.labeller(options.labels)
    config = dataclasses.replace(config, keep_restart_images=True)
    paths = inputs.discover_inputs(truth)
    names = files.unique_names([files.safe_stem(p.stem) for p in paths], lambda n: [n.lower()])
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock.hold(out, log=log):
        _check_settings(out, _settings(generator, op, config, options, checkpoint))
        done = {r["name"] for r in files.read_jsonl(out / METRICS)}
        todo = [(n, p) for n, p in zip(names, paths) if n not in done]
        face_ids = {n: i for i, n in enumerate(names)}  # its starts: its place in the list
        if done:
            log(f"evaluate: {len(done)} faces already measured, {len(todo)} to go")
        bar = FaceBar(len(todo), options.progress, "evaluate")
        try:
            for start in range(0, len(todo), options.batch_size):
                _chunk(generator, todo[start:start + options.batch_size], out, op, config,
                       options, label_of, face_ids, bar)
        finally:
            bar.close()
        records = files.read_jsonl(out / METRICS)
        figures = {"settings": json.loads((out / SETTINGS).read_text()),
                   **summary.summarize(_with_descriptors(out, records), seed=options.seed)}
        files.atomic_write_text(out / SUMMARY, json.dumps(figures, indent=1) + "\n")
        report.write_report(out, records, figures)
    return figures


def _chunk(gen, chunk, out, op, config, options, label_of, face_ids, bar) -> None:
    """Searches and measures one chunk of ``(name, path)`` faces, appending their records."""
    r = gen.config.resolution
    key = jax.random.PRNGKey(options.seed)
    ready = []
    for name, path in chunk:
        face_id = face_ids[name]
        try:
            truth_u8, resized = _load_truth(path, r)
        except (images.ImageError, ValueError, OSError) as e:
            files.append_jsonl(out / METRICS, {"name": name, "truth": str(path),
                                               **_group(label_of, path), "error": str(e)})
            bar.faces_done(1)
            continue
        obs = observe(op, truth_u8.astype(np.float32) / 255, jax.random.fold_in(key, face_id))
        ready.append((name, path, face_id, truth_u8, resized, obs))
    if not ready:
        return
    bar.chunk_started()
    res = upsample(gen, np.stack([x[5] for x in ready]), config, options.seed,
                   face_ids=[x[2] for x in ready], batch_size=options.batch_size,
                   degradation=op, progress=lambda p: bar.step(p, len(ready)))
    for i, (name, path, _, truth_u8, resized, obs) in enumerate(ready):
        rec = _face_record(out, name, path, _group(label_of, path), truth_u8, resized, obs, op,
                           res, i, options.save_restarts)
        files.append_jsonl(out / METRICS, rec)
        bar.faces_done(1)


def _with_descriptors(out: pathlib.Path, records: list[dict]) -> list[dict]:
    """The records, each measured one with its truth's ``truth_descriptor`` (records written
    before it was stored get it from their truth image, in memory)."""
    for r in records:
        if r.get("error") or "truth_descriptor" in r or not r.get("truth_face_found"):
            continue
        path = out / r["truth_resized"] if r.get("truth_resized") else pathlib.Path(r["truth"])
        try:
            r["truth_descriptor"] = list(identity.face_descriptor(images.load_image(path)[0]))
        except (identity.FaceNotFoundError, images.ImageError, OSError):
            r["truth_descriptor"] = None
    return records


def _group(label_of, path: pathlib.Path) -> dict[str, Any]:
    """``{"group": labels}``, or no labels and ``labels_error`` for a name the labeller cannot
    read (the face is still measured, and counted overall)."""
    try:
        return {"group": label_of(path.name)}
    except ValueError as e:
        return {"group": {}, "labels_error": str(e)}
