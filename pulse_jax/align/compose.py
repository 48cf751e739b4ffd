"""The output photo: the input ``upscale`` times larger, every replaced face drawn in, checked.

:func:`compose_photo` makes one output photo: the input resized ``upscale`` times with
Lanczos (Pillow's; of the filters Pillow offers it reproduces the input best when the output
is area-downscaled back: on a 512x512 portrait at x4, 43.5 dB against bicubic's 41.9 and
bilinear's 37.3, the same order at 128 and 256 px and at x2), then each face's HR result
drawn at its place and at ``upscale`` times its crop's size, through the crop's inverse
transform with a feathered seam (:func:`pulse_jax.align.paste.paste_back`).

:func:`consistency` is PULSE's principle at photo level: the output, area-downscaled by
``upscale`` (each output ``upscale x upscale`` block averaged), should reproduce the input;
it measures that over the whole photo and over each face's box (PSNR in dB and the mean
squared error in [0, 1], the search's ``l2``).

:func:`paste_results` is the photo run's last step (:mod:`pulse_jax.align.pipeline`): it reads
``aligned/manifest.jsonl`` and the batch's records and writes ``photos/{name}.png`` and one
line per photo in ``photos/manifest.jsonl`` (:func:`photo_record` has its fields).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
from typing import Callable, Optional

import numpy as np
from PIL import Image

from pulse_jax import files, images
from pulse_jax.align import folder, paste, photos
from pulse_jax.files import safe_stem

__all__ = ["MIN_FACE_PSNR", "PHOTOS", "PasteSummary", "area_downscale", "compose_photo",
           "consistency", "paste_results", "scale_quad", "upscale_photo", "xywh"]

PHOTOS = "photos"
#: A replaced face whose box, area-downscaled, is further than this from the input (PSNR,
#: dB) is reported as a miss of the photo-level check.
MIN_FACE_PSNR = 22.0

_logger = logging.getLogger(__name__)


def upscale_photo(photo: np.ndarray, upscale: int) -> np.ndarray:
    """``[H, W, 3]`` uint8 -> ``[upscale H, upscale W, 3]`` uint8 by Lanczos (module doc)."""
    if upscale == 1:
        return np.array(photo)
    h, w = photo.shape[:2]
    return np.asarray(Image.fromarray(photo).resize((w * upscale, h * upscale), Image.LANCZOS))


def area_downscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``[f H, f W, C]`` -> ``[H, W, C]`` float64: the mean of each ``f x f`` block."""
    h, w, c = image.shape
    if h % factor or w % factor:
        raise ValueError(f"a {w}x{h} image does not downscale by {factor}")
    blocks = image.astype(np.float64).reshape(h // factor, factor, w // factor, factor, c)
    return blocks.mean(axis=(1, 3))


def scale_quad(quad: np.ndarray, upscale: int) -> np.ndarray:
    """A quad in input-photo pixels -> the same place in the ``upscale``-times photo (pixel
    centres at integers in both: photo ``x`` covers ``[x - 0.5, x + 0.5]``)."""
    return (np.asarray(quad, np.float64) + 0.5) * upscale - 0.5


def xywh(box) -> list[int]:
    """dlib's inclusive ``(left, top, right, bottom)`` -> ``[x, y, w, h]`` photo pixels."""
    l, t, r, b = (int(round(v)) for v in box)
    return [l, t, r - l + 1, b - t + 1]


def _figures(a: np.ndarray, b: np.ndarray) -> dict:
    mse = float(np.mean((a / 255.0 - b / 255.0) ** 2)) if a.size else math.nan
    psnr = None if mse == 0 or mse != mse else round(10 * math.log10(1.0 / mse), 2)
    return {"psnr": psnr, "l2": round(mse, 7)}


def consistency(output: np.ndarray, photo: np.ndarray, upscale: int,
                boxes: list) -> tuple[dict, list[dict]]:
    """The photo-level check (module doc): ``({"psnr", "l2"}`` of the whole photo, the same
    for each box ``[x, y, w, h]``). ``psnr`` is None where the two are equal."""
    down = area_downscale(output, upscale)
    ref = photo.astype(np.float64)
    h, w = photo.shape[:2]
    per_face = []
    for x, y, bw, bh in boxes:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + bw, w), min(y + bh, h)
        per_face.append(_figures(down[y0:y1, x0:x1], ref[y0:y1, x0:x1]))
    return _figures(down, ref), per_face


def compose_photo(photo: np.ndarray, faces: list[tuple[np.ndarray, np.ndarray]],
                  upscale: int = 1, feather: float = 0.05) -> np.ndarray:
    """``photo`` ``upscale`` times larger with each ``(hr_face, quad)`` drawn in (module doc).

    Args:
      photo: ``[H, W, 3]`` uint8, the input photo.
      faces: ``(face [S, S, 3] uint8 or float in [0, 1], quad [4, 2] input-photo pixels)``.
      upscale: the output's scale, an integer >= 1.
      feather: the seam's width as a fraction of each crop's side.

    Returns:
      ``[upscale H, upscale W, 3]`` uint8.
    """
    if not isinstance(upscale, (int, np.integer)) or upscale < 1:
        raise ValueError(f"upscale must be an integer >= 1, got {upscale!r}")
    out = upscale_photo(np.asarray(photo), int(upscale))
    for face, quad in faces:
        out = paste.paste_back(out, face, scale_quad(quad, upscale), feather=feather)
    return out


@dataclasses.dataclass
class PasteSummary:
    """Counts of one :func:`paste_results` run."""

    photos: int = 0
    faces: int = 0
    missing: int = 0    # aligned faces without an HR result
    unreplaced: int = 0  # photos with no face replaced (an ``error`` record, no output)
    misses: int = 0     # replaced faces under MIN_FACE_PSNR in the photo-level check
    elsewhere: bool = False  # a process other than 0 of a job: process 0 pastes

    def format(self) -> str:
        if self.elsewhere:
            return "paste-back: process 0 pastes the faces into the photos"
        return (f"paste-back: {self.photos} photos written with {self.faces} faces replaced"
                + (f"; {self.missing} faces had no result" if self.missing else "")
                + (f"; {self.unreplaced} photos had no face to replace" if self.unreplaced
                   else "")
                + (f"; {self.misses} faces missed the photo-level check (under "
                   f"{MIN_FACE_PSNR:g} dB)" if self.misses else ""))


def _key(path) -> str:
    return str(pathlib.Path(path).resolve())


def _per_photo(aligned: list[dict]) -> dict[str, list[dict]]:
    """The aligned manifest's lines grouped by photo, in order."""
    groups: dict[str, list[dict]] = {}
    for a in aligned:
        groups.setdefault(a["input"], []).append(a)
    return groups


def _face_link(a: dict, r: Optional[dict]) -> dict:
    link = {"face_index": a["face_index"], "box": xywh(a["box"]), "score": a.get("score"),
            "cnn_score": a.get("cnn_score"), "crop_px": a.get("crop_px"), "replaced": False,
            "lr_size": a.get("lr_size")}
    for why in ("skipped", "error"):
        if why in a:
            link[why] = a[why]
    if "skipped" in a or "error" in a:
        return link
    link.update(crop=a["output"], lr=a.get("lr_output"))
    if r is None or not r.get("output"):
        link["error"] = (r or {}).get("error", "no HR result (not searched yet, or it missed "
                                               "eps with write_failures=False)")
    else:
        link.update(hr=r["output"], l2=r.get("l2"), success=r.get("success"), replaced=True)
    return link


def photo_record(photo_path: str, lines: list[dict], results: dict[str, dict],
                 out_dir: pathlib.Path, name: str, upscale: int) -> tuple[dict, int]:
    """Writes one photo's output and returns its ``photos/manifest.jsonl`` record and the
    number of faces that missed :data:`MIN_FACE_PSNR`.

    The record: ``input``, ``output``, ``upscale``, ``size`` (the output's ``[W, H]``),
    ``consistency`` (``psnr``, ``l2``: :func:`consistency`) and ``faces``: for each detection
    ``face_index``, ``box`` (``[x, y, w, h]`` input pixels), ``score``, ``cnn_score``,
    ``crop_px``, ``replaced``, ``skipped`` (why, when left alone by choice) or ``error``,
    ``lr_size``, and for aligned faces ``crop``, ``lr``, ``hr``, ``l2``, ``success`` and
    ``consistency``. A photo that failed or had no face replaced: ``input``, ``upscale``,
    ``error`` (and ``faces`` when it had some), no output.
    """
    base = {"input": photo_path, "upscale": upscale}
    if len(lines) == 1 and "face_index" not in lines[0]:     # the photo itself failed
        return {**base, "error": lines[0]["error"]}, 0
    links = [_face_link(a, results.get(_key(a["lr_output"])) if a.get("lr_output") else None)
             for a in lines]
    done = [(a, link) for a, link in zip(lines, links) if link["replaced"]]
    if not done:
        why = "; ".join(f"face {x['face_index']}: {x.get('skipped') or x.get('error')}"
                        for x in links)
        return {**base, "error": f"no face replaced ({why})", "faces": links}, 0
    photo = photos.load_photo(photo_path)
    hr = [(images.load_image(link["hr"])[0], np.asarray(a["quad"])) for a, link in done]
    output = compose_photo(photo, hr, upscale)
    whole, per_face = consistency(output, photo, upscale, [link["box"] for _, link in done])
    misses = 0
    for (_, link), figures in zip(done, per_face):
        link["consistency"] = figures
        misses += figures["psnr"] is not None and figures["psnr"] < MIN_FACE_PSNR
    written = images.save_png(out_dir / f"{name}.png", output)
    return {**base, "output": str(written), "size": [output.shape[1], output.shape[0]],
            "consistency": whole, "faces": links}, misses


def paste_results(output_dir: os.PathLike, upscale: int = 1,
                  log: Optional[Callable[[str], None]] = None) -> PasteSummary:
    """The photo run's last step (module doc); in a multi-process job only process 0 does it,
    after it merged the manifests."""
    from pulse_jax.batch import multihost
    out = pathlib.Path(output_dir)
    pi, pc = multihost.process()
    say = log or _logger.info
    with multihost.hold_output(out, pi, pc, say):
        return _paste_all(out, upscale, say) if pi == 0 else PasteSummary(elsewhere=True)


def _paste_all(out: pathlib.Path, upscale: int, log: Callable[[str], None]) -> PasteSummary:
    from pulse_jax.batch import manifest as batch_manifest
    aligned = files.read_jsonl(out / folder.ALIGNED / folder.MANIFEST)
    results = {_key(r["input"]): r for r in batch_manifest.read_records(out) if "input" in r}
    target = out / PHOTOS / "manifest.jsonl"
    target.unlink(missing_ok=True)
    summary = PasteSummary()
    groups = _per_photo(aligned)
    fallback = folder.photo_names(list(groups))   # an aligned/ older than photo_name
    for (photo_path, lines), name in zip(groups.items(), fallback):
        name = safe_stem(lines[0].get("photo_name", name))
        rec, misses = photo_record(photo_path, lines, results, out / PHOTOS, name, upscale)
        files.append_jsonl(target, rec)
        faces = rec.get("faces", [])
        summary.missing += sum(1 for f in faces if "crop" in f and not f["replaced"])
        summary.misses += misses
        if "output" not in rec:
            summary.unreplaced += 1
            err = rec["error"]
            log(err if err.startswith(photo_path) else f"{photo_path}: {err}")
            continue
        summary.photos += 1
        replaced = sum(f["replaced"] for f in faces)
        summary.faces += replaced
        psnr = rec["consistency"]["psnr"]
        match = "identical to" if psnr is None else f"{psnr} dB from"
        log(f"{photo_path} -> {rec['output']} ({rec['size'][0]}x{rec['size'][1]}): {replaced} "
            f"of {len(faces)} faces replaced; downscaled by {upscale} it is {match} the input")
        for f in faces:
            fc = f.get("consistency")
            if fc and fc["psnr"] is not None and fc["psnr"] < MIN_FACE_PSNR:
                log(f"  warning: face {f['face_index']} at {f['box']} downscales {fc['psnr']} dB "
                    f"from the input, under {MIN_FACE_PSNR:g} dB: it does not reproduce the "
                    "photo there")
    return summary
