"""A folder of photos in, aligned crops, their LR versions and a manifest out.

For every face of every photo (:func:`pulse_jax.inputs.discover_inputs`: a folder, a glob or
a list file) :func:`align_folder` writes, in ``output_dir``:

- ``{photo}_{k}.png``: the aligned crop, ``size x size`` (k: the face's index in the photo,
  left to right; ``photo``: the photo's name, its stem made a plain file name and unique as a
  batch's face names are, :func:`photo_names`: ``me.jpg`` and ``me.png``, in that order,
  give ``me`` and ``me-2``);
- ``lr/{photo}_{k}.png``: its LR version (its side ``lr_size``: fixed, or the face's own by
  the size rule, :mod:`pulse_jax.align.rules`) by PULSE's exact bicubic downscale (:func:`pulse_jax.degrade.bicubic_downscale`), clipped and saved with the
  reference's truncation, as the reference's ``align_face.py`` made its inputs; so
  ``pulse-jax upsample --input_dir=OUT/lr`` runs on them directly (same file names);
- one line per face in ``manifest.jsonl``: ``input`` (the photo), ``photo_name``,
  ``output`` (the crop), ``lr_output``, ``face_index``, ``box``, ``score`` and ``cnn_score``
  (the detector's, :mod:`pulse_jax.align.detect`), ``landmarks``, ``quad`` (the crop's
  corners in the photo, TL, BL, BR, TR: with ``size`` enough to invert the crop, see
  :func:`pulse_jax.align.paste.paste_back`), ``crop_px`` (the side the crop covers in the
  photo), ``size``, ``lr_size``, ``photo_size`` ``[W, H]``, ``template`` and
  ``num_landmarks``. A face not aligned gets a line with ``input``, ``photo_name``,
  ``face_index``, ``box``, ``score``, ``cnn_score``, ``crop_px`` and either ``skipped`` (the
  reason it is left alone by choice: not confirmed as a face, not chosen, large) or
  ``error`` (refused: too small, cut by the border); a photo that fails (unreadable, no face)
  a line with ``input``, ``photo_name`` and ``error``; the other photos proceed.

The manifest is started afresh on each run (every photo is aligned again). The output folder
is locked while the run writes (:mod:`pulse_jax.folder_lock`): a second run into it raises
``OutputBusyError``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable, Optional, Sequence

import numpy as np

from pulse_jax import files, folder_lock, images, inputs
from pulse_jax.align import aligner, framing, photos, rules as face_rules
from pulse_jax.align.errors import AlignError
from pulse_jax.files import safe_stem, unique_names

__all__ = ["ALIGNED", "MANIFEST", "AlignSummary", "align_folder", "lr_versions", "photo_names"]

#: The aligned faces' folder inside a photo run's output folder.
ALIGNED = "aligned"
MANIFEST = "manifest.jsonl"
LR_FOLDER = "lr"


@dataclasses.dataclass
class AlignSummary:
    """Counts of one :func:`align_folder` run (``errors``: photos or faces that failed)."""

    photos: int = 0
    faces: int = 0
    errors: int = 0
    skipped: int = 0

    def format(self) -> str:
        return (f"align: {self.photos} photos, {self.faces} faces aligned, "
                + (f"{self.skipped} left alone (the manifest's skipped lines say why), "
                   if self.skipped else "")
                + f"{self.errors} problems (see the manifest's error lines)")


def lr_versions(crops: np.ndarray, lr_size: int) -> np.ndarray:
    """``[N, S, S, 3]`` uint8 crops -> ``[N, s, s, 3]`` float32 in [0, 1] (s = ``lr_size``),
    by PULSE's bicubic downscale of ``u8 / 255`` then clipping, as the reference."""
    from pulse_jax import degrade
    size = crops.shape[1]
    if lr_size < 1 or size % lr_size:
        raise ValueError(f"lr_size {lr_size} must divide the crop size {size}")
    x = crops.astype(np.float32) / np.float32(255)
    lr = np.asarray(degrade.bicubic_downscale(x, size // lr_size))
    return np.clip(lr, 0.0, 1.0)


def photo_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """The photos' output names, in order: each stem as a plain file name
    (:func:`pulse_jax.files.safe_stem`), then ``-2``, ``-3``, ... for a name (case-insensitive)
    already taken, so every photo has its own crops ``{name}_{k}.png`` and pasted photo."""
    stems = [safe_stem(pathlib.Path(p).stem) for p in paths]
    return unique_names(stems, lambda n: [n.lower()])


def _number(x: Optional[float]) -> Optional[float]:
    """A score for JSON: None stays None (the CNN found no face), nan (not run) too."""
    return None if x is None or x != x else round(float(x), 4)


def _detection(photo: pathlib.Path, name: str, face: aligner.AlignedFace | aligner.Refused
               ) -> dict:
    return {"input": str(photo), "photo_name": name, "face_index": face.index,
            "box": face.box.tolist(), "score": _number(face.score),
            "cnn_score": _number(face.cnn_score), "crop_px": round(float(face.crop_px), 2)}


def _align_one(photo_path: pathlib.Path, photo_name: str, out_dir: pathlib.Path, size: int,
               rules: face_rules.FaceRules, template: framing.Template, num_landmarks: int,
               options: dict) -> tuple[list[dict], int]:
    """Aligns one photo, writes its files (``{photo_name}_{k}.png``); returns its manifest
    records and face count."""
    photo = photos.load_photo(photo_path)
    results = aligner.align_photo(photo, size, template=template, num_landmarks=num_landmarks,
                                  rules=rules, path=photo_path, **options)
    records, done = [], 0
    for r in results:
        rec = _detection(photo_path, photo_name, r)
        if isinstance(r, aligner.Refused):
            if r.skipped:   # a choice, said without the photo's path
                rec["skipped"] = r.error.message
            else:
                rec["error"] = str(r.error)
            records.append(rec)
            continue
        name = f"{photo_name}_{r.index}.png"
        out = images.save_png(out_dir / name, r.image)
        lr_out = None
        if r.lr_size:
            lr = lr_versions(r.image[None], r.lr_size)[0]
            lr_out = str(images.save_png(out_dir / LR_FOLDER / name, lr))
        done += 1
        records.append({**rec, "output": str(out), "lr_output": lr_out,
                        "landmarks": r.landmarks.tolist(), "quad": r.quad.tolist(),
                        "size": size, "lr_size": r.lr_size, "photo_size": [photo.shape[1],
                                                                           photo.shape[0]],
                        "template": template.name, "num_landmarks": num_landmarks})
    return records, done


def align_folder(input_spec: str | os.PathLike | Sequence[str | os.PathLike],
                 output_dir: str | os.PathLike, size: int,
                 rules: face_rules.FaceRules = face_rules.FaceRules(),
                 template: framing.Template = framing.FFHQ, num_landmarks: int = 5,
                 log: Callable[[str], None] | None = None, **options) -> AlignSummary:
    """Aligns every face of every photo of ``input_spec`` into ``output_dir``.

    Args:
      input_spec: photos (:func:`pulse_jax.inputs.discover_inputs`).
      output_dir: created if missing.
      size: the crops' side (the generator's resolution).
      rules: the faces used and their LR sides (:class:`pulse_jax.align.rules.FaceRules`:
        the size rule by default; a fixed ``lr_size`` must divide ``size``, 0: no LR files).
      template, num_landmarks: the framing and the landmark model (5 or 68).
      log: told one line per photo.
      options: passed to :func:`pulse_jax.align.aligner.align_photo` (``detect_options``,
        ``transform_size``).

    Returns:
      an :class:`AlignSummary`. Raises ``ImageError`` when ``input_spec`` names no photos,
      ValueError for a bad ``lr_size``, ImportError without the align extra,
      ``OutputBusyError`` when another run is writing into ``output_dir``.
    """
    lr_size = rules.lr_size
    if lr_size != face_rules.AUTO and lr_size and (lr_size < 1 or size % lr_size):
        raise ValueError(f"--lr_size {lr_size} must divide --size {size} "
                         f"(sizes that work: {[s for s in range(1, size) if size % s == 0]})")
    paths = inputs.discover_inputs(input_spec)
    out_dir = pathlib.Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock.hold(out_dir, log=log):
        return _align_all(paths, out_dir, size, rules, template, num_landmarks, log, options)


def _align_all(paths: list[pathlib.Path], out_dir: pathlib.Path, size: int,
               rules: face_rules.FaceRules,
               template: framing.Template, num_landmarks: int,
               log: Callable[[str], None] | None, options: dict) -> AlignSummary:
    manifest = out_dir / MANIFEST
    manifest.unlink(missing_ok=True)
    summary = AlignSummary()
    for path, name in zip(paths, photo_names(paths)):
        summary.photos += 1
        try:
            records, n = _align_one(pathlib.Path(path), name, out_dir, size, rules,
                                    template, num_landmarks, options)
        except AlignError as e:
            records, n = [{"input": str(path), "photo_name": name, "error": str(e)}], 0
        summary.faces += n
        summary.errors += sum("error" in r for r in records)
        summary.skipped += sum("skipped" in r for r in records)
        for r in records:
            files.append_jsonl(manifest, r)
        if log is not None:
            errs = [r["error"] for r in records if "error" in r]
            skips = [f"face {r['face_index']} left alone: {r['skipped']}" for r in records
                     if "skipped" in r]
            log(f"{path}: {n} face(s) aligned" + "".join(f"\n  {e}" for e in errs + skips))
    return summary
