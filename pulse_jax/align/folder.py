"""A folder of photos in, aligned crops, their LR versions and a manifest out.

For every face of every photo (:func:`pulse_jax.inputs.discover_inputs`: a folder, a glob or
a list file) :func:`align_folder` writes, in ``output_dir``:

- ``{photo}_{k}.png``: the aligned crop, ``size x size`` (k: the face's index in the photo,
  left to right; ``photo``: the photo's name, its stem made a plain file name and unique as a
  batch's face names are, :func:`photo_names`: ``me.jpg`` and ``me.png``, in that order,
  give ``me`` and ``me-2``);
- ``lr/{photo}_{k}.png``: its ``lr_size x lr_size`` version by PULSE's exact bicubic
  downscale (:func:`pulse_jax.degrade.bicubic_downscale`), clipped and saved with the
  reference's truncation, as the reference's ``align_face.py`` made its inputs; so
  ``pulse-jax upsample --input_dir=OUT/lr`` runs on them directly (same file names);
- one line per face in ``manifest.jsonl``: ``input`` (the photo), ``photo_name``,
  ``output`` (the crop), ``lr_output``, ``face_index``, ``box``, ``landmarks``, ``quad``
  (the crop's corners in the photo, TL, BL, BR, TR: with ``size`` enough to invert the crop,
  see :func:`pulse_jax.align.paste.paste_back`), ``size``, ``lr_size``, ``photo_size``
  ``[W, H]``, ``template`` and ``num_landmarks``. A refused face gets a line with ``input``,
  ``photo_name``, ``face_index``, ``box`` and ``error``; a photo that fails (unreadable, no
  face) a line with ``input``, ``photo_name`` and ``error``; the other photos proceed.

The manifest is started afresh on each run (every photo is aligned again). The output folder
is locked while the run writes (:mod:`pulse_jax.folder_lock`): a second run into it raises
``OutputBusyError``.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Callable, Sequence

import numpy as np

from pulse_jax import files, folder_lock, images, inputs
from pulse_jax.align import aligner, framing, photos
from pulse_jax.align.errors import AlignError
from pulse_jax.files import safe_stem, unique_names

__all__ = ["MANIFEST", "AlignSummary", "align_folder", "lr_versions", "photo_names"]

MANIFEST = "manifest.jsonl"
LR_FOLDER = "lr"


@dataclasses.dataclass
class AlignSummary:
    """Counts of one :func:`align_folder` run (``errors``: photos or faces that failed)."""

    photos: int = 0
    faces: int = 0
    errors: int = 0

    def format(self) -> str:
        return (f"align: {self.photos} photos, {self.faces} faces aligned, "
                f"{self.errors} problems (see the manifest's error lines)")


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


def _face_record(photo: pathlib.Path, name: str, shape: tuple[int, ...],
                 face: aligner.AlignedFace, out: pathlib.Path, lr_out: pathlib.Path | None, size: int, lr_size: int,
                 template: framing.Template, num_landmarks: int) -> dict:
    return {"input": str(photo), "photo_name": name, "output": str(out),
            "lr_output": None if lr_out is None else str(lr_out),
            "face_index": face.index, "box": face.box.tolist(),
            "landmarks": face.landmarks.tolist(), "quad": face.quad.tolist(), "size": size,
            "lr_size": lr_size, "photo_size": [shape[1], shape[0]],
            "template": template.name, "num_landmarks": num_landmarks}


def _align_one(photo_path: pathlib.Path, photo_name: str, out_dir: pathlib.Path, size: int,
               lr_size: int, template: framing.Template, num_landmarks: int, options: dict
               ) -> tuple[list[dict], int]:
    """Aligns one photo, writes its files (``{photo_name}_{k}.png``); returns its manifest
    records and face count."""
    photo = photos.load_photo(photo_path)
    results = aligner.align_photo(photo, size, template=template, num_landmarks=num_landmarks,
                                  path=photo_path, **options)
    done = [r for r in results if isinstance(r, aligner.AlignedFace)]
    lrs = lr_versions(np.stack([r.image for r in done]), lr_size) if done and lr_size else None
    records, j = [], 0
    for r in results:
        if isinstance(r, aligner.Refused):
            records.append({"input": str(photo_path), "photo_name": photo_name,
                            "face_index": r.index, "box": r.box.tolist(),
                            "error": str(r.error)})
            continue
        name = f"{photo_name}_{r.index}.png"
        out = images.save_png(out_dir / name, r.image)
        lr_out = None
        if lrs is not None:
            lr_out = images.save_png(out_dir / LR_FOLDER / name, lrs[j])
        j += 1
        records.append(_face_record(photo_path, photo_name, photo.shape, r, out, lr_out, size,
                                    lr_size, template, num_landmarks))
    return records, len(done)


def align_folder(input_spec: str | os.PathLike | Sequence[str | os.PathLike],
                 output_dir: str | os.PathLike, size: int, lr_size: int = 32,
                 template: framing.Template = framing.FFHQ, num_landmarks: int = 5,
                 log: Callable[[str], None] | None = None, **options) -> AlignSummary:
    """Aligns every face of every photo of ``input_spec`` into ``output_dir``.

    Args:
      input_spec: photos (:func:`pulse_jax.inputs.discover_inputs`).
      output_dir: created if missing.
      size: the crops' side (the generator's resolution).
      lr_size: the LR side (must divide ``size``; 0: no LR files).
      template, num_landmarks: the framing and the landmark model (5 or 68).
      log: told one line per photo.
      options: passed to :func:`pulse_jax.align.aligner.align_photo` (``min_face_px``,
        ``min_inside``, ``max_detect_side``, ``transform_size``).

    Returns:
      an :class:`AlignSummary`. Raises ``ImageError`` when ``input_spec`` names no photos,
      ValueError for a bad ``lr_size``, ImportError without the align extra,
      ``OutputBusyError`` when another run is writing into ``output_dir``.
    """
    if lr_size and (lr_size < 1 or size % lr_size):
        raise ValueError(f"--lr_size {lr_size} must divide --size {size} "
                         f"(sizes that work: {[s for s in range(1, size) if size % s == 0]})")
    paths = inputs.discover_inputs(input_spec)
    out_dir = pathlib.Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with folder_lock.hold(out_dir, log=log):
        return _align_all(paths, out_dir, size, lr_size, template, num_landmarks, log, options)


def _align_all(paths: list[pathlib.Path], out_dir: pathlib.Path, size: int, lr_size: int,
               template: framing.Template, num_landmarks: int,
               log: Callable[[str], None] | None, options: dict) -> AlignSummary:
    manifest = out_dir / MANIFEST
    manifest.unlink(missing_ok=True)
    summary = AlignSummary()
    for path, name in zip(paths, photo_names(paths)):
        summary.photos += 1
        try:
            records, n = _align_one(pathlib.Path(path), name, out_dir, size, lr_size,
                                    template, num_landmarks, options)
        except AlignError as e:
            records, n = [{"input": str(path), "photo_name": name, "error": str(e)}], 0
        summary.faces += n
        summary.errors += sum("error" in r for r in records)
        for r in records:
            files.append_jsonl(manifest, r)
        if log is not None:
            errs = [r["error"] for r in records if "error" in r]
            log(f"{path}: {n} face(s) aligned" + "".join(f"\n  {e}" for e in errs))
    return summary
