"""One request of the web app, as plain functions (no Gradio here): the upload is checked,
routed (:func:`route`) and handed to the library, and what the library wrote is gathered
for the page (:class:`Outcome`) and zipped.

* A **tiny face** goes to :func:`pulse_jax.batch.run_batch` as it is: the search, the
  face's PNG, its contact sheet (LR | best | every restart with its l2, and the variability
  map), its variability pair and its manifest line, exactly as ``pulse-jax upsample`` writes
  them.
* A **photo** goes to :func:`pulse_jax.align.upsample_photos` (the ``align`` extra): its faces
  are found, searched and drawn back into a photo ``upscale`` times larger, with the same
  per-face files and the photo's manifest line (``pulse-jax upsample --align``).

The app has no pipeline of its own: everything it shows was written by those two.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import shutil
import time
import zipfile
from typing import Any, Callable, Optional

from pulse_jax.app.uploads import Limits, Upload, UploadError, read_upload

__all__ = ["FACE", "PHOTO", "ROUTE_RULE", "Outcome", "Settings", "check_settings", "route",
           "upsample_upload"]

FACE, PHOTO = "tiny face", "photo"

#: The rule :func:`route` applies, as the page says it.
ROUTE_RULE = (
    "A square image whose side divides the model's resolution and is below it (8, 16 or 32 "
    "px for the 64x64 model; with a degradation, exactly the shape it makes) is a **tiny "
    "face**, already cropped: it is upsampled as it is, to the model's resolution. Anything "
    "else is a **photo**: its faces are found, upsampled and drawn back into a photo "
    "*upscale* times larger (faces already at the model's resolution are left alone).")

Tell = Callable[[float, str], None]


@dataclasses.dataclass(frozen=True)
class Settings:
    """What the page asks for (each a field of the search or of the photo path)."""

    upscale: int = 4        # photos: the output photo's scale
    steps: int = 100        # SearchConfig.steps
    restarts: int = 4       # SearchConfig.restarts (2 or more give a variability map)
    eps: float = 2e-3       # SearchConfig.eps
    degradation: str = ""   # BatchOptions.degradation ("" the reference's bicubic)
    seed: int = 0


@dataclasses.dataclass
class Outcome:
    """What the page shows of one request.

    Attributes:
      route: :data:`FACE` or :data:`PHOTO`.
      output: the output image (the HR face, or the upscaled photo).
      pictures: ``(path, caption)`` per face: its contact sheet, then its variability pair.
      records: the manifest lines (the photo's first, then each face's), with paths made
        relative to the request folder (the zip's layout).
      archive: a zip of everything the request wrote.
      message: one paragraph for the page (what was done, how long it took).
    """

    route: str
    output: pathlib.Path
    pictures: list[tuple[pathlib.Path, str]]
    records: list[dict]
    archive: pathlib.Path
    message: str


def check_settings(s: Settings, limits: Limits = Limits()) -> Settings:
    """``s`` with whole numbers made ints; UploadError for a setting out of range."""
    def whole(name: str, lo: int, hi: int) -> int:
        v = getattr(s, name)
        if v is None or float(v) != int(float(v)) or not lo <= int(v) <= hi:
            raise UploadError(f"{name} must be a whole number from {lo} to {hi}, got {v}")
        return int(v)
    if not (s.eps is not None and 0 < float(s.eps) < 1):
        raise UploadError(f"eps must be above 0 and below 1, got {s.eps}")
    return Settings(upscale=whole("upscale", 1, limits.max_upscale),
                    steps=whole("steps", 1, limits.max_steps),
                    restarts=whole("restarts", 1, limits.max_restarts), eps=float(s.eps),
                    degradation=str(s.degradation or "").strip(), seed=whole("seed", 0, 2**31 - 1))


def route(size: tuple[int, int], resolution: int, degradation: str = "") -> str:
    """:data:`FACE` or :data:`PHOTO` for an image of ``size`` ``(width, height)`` and a
    generator of ``resolution`` (:data:`ROUTE_RULE`); UploadError for a bad degradation."""
    w, h = size
    if degradation:
        from pulse_jax import degrade
        try:
            _, oh, ow, _ = degrade.parse(degradation).out_shape((1, resolution, resolution, 3))
        except ValueError as e:
            raise UploadError(f"degradation {degradation!r}: {e}") from None
        return FACE if (h, w) == (oh, ow) else PHOTO
    return FACE if w == h and w < resolution and resolution % w == 0 else PHOTO


def upsample_upload(path: os.PathLike, settings: Settings, generator, checkpoint: pathlib.Path,
                    folder: pathlib.Path, *, name: str = "", limits: Limits = Limits(),
                    tell: Optional[Tell] = None) -> Outcome:
    """Runs one request in ``folder`` (empty; the caller removes it later).

    Args:
      path: the uploaded file; ``name``: the name the client gave it.
      settings: the :class:`Settings` (checked with :func:`check_settings`).
      generator, checkpoint: the model and its checkpoint folder.
      folder: where the input copy, the library's outputs and the zip go.
      limits: the :class:`Limits`.
      tell: ``tell(fraction, text)`` as the search goes (step, best l2).

    Returns:
      the :class:`Outcome`.

    Raises:
      UploadError: with the page's message: a bad upload or setting, an output over the
        pixel limit, no face found in a photo, a photo without the align extra, a search
        that failed.
    """
    t0 = time.perf_counter()
    s = check_settings(settings, limits)
    up = read_upload(path, limits, name)
    kind = route(up.size, generator.resolution, s.degradation)
    inputs = folder / "input"
    inputs.mkdir(parents=True)
    ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}[up.format]
    shutil.copyfile(up.path, inputs / f"{up.stem}{ext}")
    out = folder / "output"
    tell = tell or (lambda f, t: None)
    tell(0.0, f"{kind}: starting the search (the first request compiles it)")
    if kind == FACE:
        photo_recs, face_recs = [], _face(inputs, out, s, generator, tell)
    else:
        w, h = up.size
        if w * h * s.upscale ** 2 > limits.max_output_pixels:
            raise UploadError(f"{w}x{h} x{s.upscale} would be {w * h * s.upscale ** 2 / 1e6:.0f} "
                              f"million pixels, over the limit of "
                              f"{limits.max_output_pixels / 1e6:.0f} million: choose a "
                              "smaller upscale")
        photo_recs = _photo(inputs, out, s, generator, checkpoint, tell)
        from pulse_jax.batch import manifest
        face_recs = manifest.read_records(out)
    output = pathlib.Path((photo_recs or face_recs)[0]["output"])
    pictures = _pictures(face_recs)
    records = [_relative(r, folder) for r in photo_recs + face_recs]
    archive = _zip(folder, up.stem)
    took = time.perf_counter() - t0
    ok = sum(bool(r.get("success")) for r in face_recs)
    message = (f"**{up.stem}** ({up.size[0]}x{up.size[1]}) taken as a {kind}; "
               f"{len(face_recs)} face(s) searched ({s.steps} steps x {s.restarts} restarts), "
               f"{ok} within eps {s.eps:g}; {took:.1f} s.")
    return Outcome(kind, output, pictures, records, archive, message)


def _progress(tell: Tell) -> Callable[[Any], None]:
    import numpy as np

    def on_progress(p) -> None:
        best = float(np.nanmin(p.best_l2)) if np.size(p.best_l2) else float("nan")
        tell(p.step / max(p.steps, 1), f"step {p.step}/{p.steps}, best l2 {best:.4g}")
    return on_progress


def _options(s: Settings):
    from pulse_jax import batch
    return batch.BatchOptions(seed=s.seed, save_contact_sheet=True,
                              save_variability=s.restarts >= 2, progress=False,
                              degradation=s.degradation)


def _search(s: Settings):
    from pulse_jax.search import SearchConfig
    return SearchConfig(steps=s.steps, restarts=s.restarts, eps=s.eps)


def _face(inputs: pathlib.Path, out: pathlib.Path, s: Settings, generator,
          tell: Tell) -> list[dict]:
    """Runs the search of one tiny face into ``out``; its manifest records (UploadError if
    it wrote no face)."""
    from pulse_jax import batch, images
    errors: list[str] = []
    try:
        summary = batch.run_batch(generator, str(inputs), out, _search(s), _options(s),
                                  log=errors.append, on_progress=_progress(tell))
    except (images.ImageError, ValueError) as e:
        raise UploadError(str(e)) from None
    recs = batch.manifest.read_records(out)
    rec = recs[0] if recs else {}
    if not summary.done or not rec.get("output"):
        raise UploadError(_first_error(rec, errors, "the search wrote no face"))
    return recs


def _photo(inputs: pathlib.Path, out: pathlib.Path, s: Settings, generator,
           checkpoint: pathlib.Path, tell: Tell) -> list[dict]:
    """Runs one photo into ``out``; its manifest line (UploadError if no face was replaced)."""
    from pulse_jax import files, images, weights
    try:
        from pulse_jax.align import landmarks, pipeline
        landmarks.load_dlib()
    except ImportError:
        raise UploadError('photos need the align extra (pip install "pulse-jax[align]"); '
                          "a tiny face does not") from None
    errors: list[str] = []
    try:
        pipeline.upsample_photos(generator, str(inputs), out, _search(s), _options(s),
                                 upscale=s.upscale,
                                 checkpoint_manifest=weights.read_manifest(checkpoint),
                                 log=errors.append, on_progress=_progress(tell))
    except (images.ImageError, ValueError) as e:
        raise UploadError(str(e)) from None
    recs = files.read_jsonl(out / pipeline.PHOTOS / "manifest.jsonl")
    rec = recs[0] if recs else {}
    if not rec.get("output"):
        raise UploadError(_first_error(rec, errors, "no face was found in the photo"))
    return [rec]


def _first_error(rec: dict, errors: list[str], default: str) -> str:
    msg = rec.get("error") or next((e for e in errors if "error" in e.lower()), "") or default
    return str(msg).strip().splitlines()[-1] if msg else default


def _pictures(face_recs: list[dict]) -> list[tuple[pathlib.Path, str]]:
    pics = []
    for r in face_recs:
        name, l2 = r.get("name", "face"), r.get("l2")
        l2s = "" if l2 is None else f", l2 {l2:.4g}"
        every = " | ".join(f"r{i} l2 {x:.4g}" if x is not None else f"r{i} l2 -"
                           for i, x in enumerate(r.get("restart_l2") or []))
        if r.get("sheet"):
            pics.append((pathlib.Path(r["sheet"]),
                         f"{name}: LR | best (r{r.get('restart')}{l2s}) | {every}"))
        if r.get("variability_output"):
            pics.append((pathlib.Path(r["variability_output"]),
                         f"{name}: variability across restarts (mean {r.get('variability')})"))
    return pics


def _relative(value: Any, folder: pathlib.Path) -> Any:
    """``value`` with every string naming a path under ``folder`` made relative to it (the
    page never shows the server's own paths)."""
    if isinstance(value, dict):
        return {k: _relative(v, folder) for k, v in value.items()}
    if isinstance(value, list):
        return [_relative(v, folder) for v in value]
    if isinstance(value, str):
        for root in (str(folder), os.path.realpath(folder)):
            if value.startswith(root + os.sep):
                return value[len(root) + 1:]
    return value


def _zip(folder: pathlib.Path, stem: str) -> pathlib.Path:
    target = folder / f"pulse-jax-{stem}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(folder.rglob("*")):
            if p.is_file() and p != target and ".pulse_jax.lock" not in p.name:
                z.write(p, p.relative_to(folder).as_posix())
    return target
