r"""Evidence for ``pulse-jax upsample --align --upscale=N`` on whole photos with small faces:
which faces are found, which are replaced, and whether the output, downscaled, is the input.

  python experiments/photo_upscale_eval.py --workdir=/tmp/photo_eval \
      --real=face_recognition=/tmp/photo_eval/real/orig/face_recognition,... \
      --real_source=face_recognition=ageitgey/face_recognition@COMMIT:examples ... \
      --out=docs/evidence/photo_upscale.json --pictures=docs/photos

Two parts, each one ``pulse-jax upsample --input_dir=FOLDER --output_dir=OUT --align
--upscale=N --checkpoint=CHECKPOINT --config.devices=1 --config.progress=False`` on a folder:

(a) **synthetic photos**: the committable faces of ``--faces`` (64x64 samples of our own
    generator) pasted, each turned by a small random angle, into 480x320 photos with a
    smooth random-colour background, at each side of ``--sizes`` (``--photos_per_size``
    photos per side, every face in each), plus one photo with a 32 px face beside three
    face-like decoys (a round smiley badge, a cartoon face and a line-drawn face). The placement (Lanczos resize,
    then a rotation about the face's centre sampled here by cubic splines) is known
    exactly, so each detection is matched to its face (its box centre inside the turned
    square) and its 5 landmarks are compared with those dlib finds on the same 64x64 face
    upscaled to 256, mapped into the photo through the placement (% of the face side).
(b) **real photos** (``--real``): the faces :func:`pulse_jax.align.detect.detect_faces`
    confirms on each original are the truth; the photo is resized (Lanczos) so their median
    box is ``--target_face_px`` (photos whose median face is under ``--min_original_face_px``
    are skipped), then the downscaled folder is run, and its detections matched to the
    truth by box centre, mapped through the scale.

Per face size (a) and per source (b) the JSON has the faces placed or true, found, missed,
false positives (detections on no face) and how many of those were replaced, faces
replaced and successful (``l2 <= eps``), the photo-level and per-face consistency PSNR
(:func:`pulse_jax.align.compose.consistency`: the output area-downscaled by N vs the
input), the LR sides used, and each command with its wall time. No pixels and no paths
reach ``--out``: the real photos are named by file name and their repository's commit.
``--pictures`` gets a few ``input | bicubic xN | ours`` JPEGs, of the synthetic photos only
(committable faces). ``--markdown`` gets the tables as markdown.
"""

from __future__ import annotations

import collections
import glob
import json
import pathlib
import shutil
import statistics
import time

import numpy as np
from absl import app, flags
from PIL import Image, ImageDraw

from pulse_jax import cli, exit_codes, files
from pulse_jax.align import detect, photos as photo_io, rules
from experiments.synthetic_photos import (CANVAS, make_synthetic, reference_landmarks)

FLAGS = flags.FLAGS
flags.DEFINE_string("faces", "tests/data/align/utkface64_sample_*.png",
                    "glob of the committable faces pasted into the synthetic photos")
flags.DEFINE_list("sizes", ["16", "24", "32", "48"], "pasted face sides (photo pixels)")
flags.DEFINE_integer("photos_per_size", 2, "synthetic photos per face side")
flags.DEFINE_float("max_angle", 8.0, "faces are turned by a uniform angle in +-this (degrees)")
flags.DEFINE_integer("seed", 0, "seed of the synthetic photos")
flags.DEFINE_list("real", [], "label=folder pairs of real photos (part b; empty: skipped)")
flags.DEFINE_multi_string("real_source", [], "label=owner/repo@commit:folder, recorded")
flags.DEFINE_float("target_face_px", 30.0, "real photos: the median face box after resizing")
flags.DEFINE_float("min_original_face_px", 40.0,
                   "real photos whose median face box is smaller are skipped")
flags.DEFINE_multi_string("real_extra", [], "label/file=face_px: also run that photo resized "
                          "so its median face is face_px (e.g. skimage/astronaut.png=23, where "
                          "the HOG detector finds the suit's patch)")
flags.DEFINE_list("parts", ["synthetic", "real"], "which parts to run")
flags.DEFINE_integer("upscale", 4, "the output photos' scale")
flags.DEFINE_string("checkpoint", "default", "the generator (pulse-jax's --checkpoint)")
flags.DEFINE_string("workdir", "/tmp/photo_eval", "work folders (not committed)")
flags.DEFINE_string("out", "docs/evidence/photo_upscale.json", "the JSON of figures")
flags.DEFINE_string("pictures", "docs/photos", "where the side-by-side JPEGs go ('': none)")
flags.DEFINE_string("markdown", "", "also write the tables here as markdown ('': no)")



# The CNN confidence a face needs to be replaced (pulse_jax.align.rules.FaceRules').
MIN_CNN = getattr(rules.FaceRules(), "min_cnn_score", 0.0)


def confirmed(cnn_score) -> bool:
    """Whether the CNN check confirms a detection as the photo run's rules do."""
    return cnn_score is not None and cnn_score == cnn_score and cnn_score >= MIN_CNN


# --------------------------------------------------------------------------- running

def run_upsample(input_dir: pathlib.Path, out_dir: pathlib.Path) -> dict:
    if out_dir.exists():  # a rerun would resume, and its time would mean nothing
        raise SystemExit(f"{out_dir} exists: remove it, or give another --workdir")
    args = ["upsample", f"--input_dir={input_dir}", f"--output_dir={out_dir}", "--align",
            f"--upscale={FLAGS.upscale}", f"--checkpoint={FLAGS.checkpoint}",
            "--config.devices=1", "--config.progress=False"]
    t0 = time.perf_counter()
    code = cli.run(args)
    wall = time.perf_counter() - t0
    if code not in (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.MISSED_EPS):
        raise SystemExit(f"pulse-jax upsample on {input_dir} exited {code}")
    return {"command": "pulse-jax " + " ".join(args), "exit_code": code,
            "wall_s": round(wall, 1)}


def photo_records(out_dir: pathlib.Path) -> dict[str, dict]:
    """``photos/manifest.jsonl`` by the input photo's stem."""
    return {pathlib.Path(r["input"]).stem: r
            for r in files.read_jsonl(out_dir / "photos" / "manifest.jsonl")}


def box_centre(xywh) -> np.ndarray:
    x, y, w, h = xywh
    return np.array([x + (w - 1) / 2.0, y + (h - 1) / 2.0])


def face_row(f: dict) -> dict:
    """The figures of one detection of a photo record, no paths."""
    row = {k: f.get(k) for k in ("face_index", "box", "score", "cnn_score", "crop_px",
                                 "replaced", "lr_size", "l2", "success")}
    for k in ("score", "cnn_score", "crop_px", "l2"):
        if isinstance(row[k], float):
            row[k] = round(row[k], 5 if k == "l2" else 3)
    why = f.get("skipped") or f.get("error")
    if why:
        row["why_not"] = why
    if f.get("consistency"):
        row["psnr"] = f["consistency"]["psnr"]
    return row


def stats(values: list) -> dict:
    v = [x for x in values if x is not None]
    return {"mean": round(statistics.fmean(v), 2) if v else None,
            "min": round(min(v), 2) if v else None}


def tally(rows: list[dict], truth_key: str) -> dict:
    """The table row of a group of photos (``rows``: per photo, with ``truth`` and
    ``detections``)."""
    truth = [t for r in rows for t in r["truth"]]
    dets = [d for r in rows for d in r["detections"]]
    fps = [d for d in dets if d["match"] is None]
    replaced = [t for t in truth if t.get("replaced")]
    out = {"photos": len(rows), truth_key: len(truth),
           "found": sum(t["found"] for t in truth),
           "missed": sum(not t["found"] for t in truth),
           "false_positives": len(fps),
           "false_positives_confirmed": sum(confirmed(d["cnn_score"]) for d in fps),
           "false_positives_replaced": sum(bool(d["replaced"]) for d in fps),
           "replaced": len(replaced),
           "success": sum(bool(t.get("success")) for t in replaced),
           "photo_psnr": stats([r["photo_psnr"] for r in rows]),
           "face_psnr": stats([t.get("psnr") for t in replaced]),
           "lr_sizes": dict(sorted(collections.Counter(
               str(t["lr_size"]) for t in replaced).items()))}
    return out


def match(detections: list[dict], truth: list[dict], inside) -> None:
    """Greedy one-to-one matching: each truth face takes the first unmatched detection for
    which ``inside(truth_face, detection_centre)``."""
    for d in detections:
        d["match"] = None
    for i, t in enumerate(truth):
        t["found"] = False
        for d in detections:
            if d["match"] is None and inside(t, box_centre(d["box"])):
                d["match"], t["found"] = i, True
                for k in ("replaced", "lr_size", "l2", "success", "psnr", "why_not",
                          "cnn_score"):
                    if k in d:
                        t[k] = d[k]
                t["detection"] = d["face_index"]
                break


# --------------------------------------------------------------------------- part (a)

def synthetic_part(work: pathlib.Path) -> tuple[dict, list[dict]]:
    paths = sorted(glob.glob(FLAGS.faces))
    if not paths:
        raise SystemExit(f"--faces={FLAGS.faces} matches nothing")
    faces64 = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    refs = [reference_landmarks(f) for f in faces64]
    folder = work / "synthetic" / "photos"
    specs = make_synthetic(folder, faces64, [int(s) for s in FLAGS.sizes],
                           FLAGS.photos_per_size, FLAGS.max_angle, FLAGS.seed)
    cmd = run_upsample(folder, work / "synthetic" / "out")
    records = photo_records(work / "synthetic" / "out")
    rows = []
    for spec in specs:
        rec = records[spec["name"]]
        photo = photo_io.load_photo(folder / f"{spec['name']}.png")
        found = detect.detect_faces(photo, 5)
        dets = [face_row(f) for f in rec.get("faces", [])]
        truth = [{"placement": p.record(), "_p": p} for p in spec["placements"]]
        match(dets, truth, lambda t, c: t["_p"].contains(c))
        for t in truth:        # landmark error: detect_faces' points vs the mapped reference
            p = t.pop("_p")
            ref = p.from_original(refs[p.face_index])
            mine = [f for f in found if p.contains((f.box[:2] + f.box[2:]) / 2)]
            if mine:
                err = np.linalg.norm(mine[0].landmarks - ref, axis=1).mean()
                t["landmark_error_pct"] = round(float(100 * err / p.side), 2)
        for d in dets:
            if d["match"] is None:
                c = box_centre(d["box"])
                d["on_decoy"] = next((x["kind"] for x in spec["decoys"]
                                      if x["box"][0] <= c[0] <= x["box"][2]
                                      and x["box"][1] <= c[1] <= x["box"][3]), None)
        rows.append({"photo": f"{spec['name']}.png", "group": spec["group"],
                     "output": "output" in rec, "error": rec.get("error"),
                     "photo_psnr": (rec.get("consistency") or {}).get("psnr"),
                     "truth": truth, "detections": dets,
                     "decoys": spec["decoys"]})
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    table = []
    for g, rs in groups.items():
        row = {"group": g, **tally(rs, "faces_placed")}
        errs = [t["landmark_error_pct"] for r in rs for t in r["truth"]
                if "landmark_error_pct" in t]
        row["false_positives_on"] = dict(collections.Counter(
            d.get("on_decoy") or "elsewhere" for r in rs for d in r["detections"]
            if d["match"] is None))
        row["landmark_error_pct"] = {"mean": stats(errs)["mean"],
                                     "max": round(max(errs), 2) if errs else None}
        table.append(row)
    part = {"faces": [pathlib.Path(p).name for p in paths], "canvas": list(CANVAS),
            "sizes": [int(s) for s in FLAGS.sizes], "photos_per_size": FLAGS.photos_per_size,
            "max_angle": FLAGS.max_angle, "seed": FLAGS.seed,
            "reference_landmarks": "dlib 5 points on the 64x64 face upscaled to 256 (Lanczos)",
            "run": cmd, "table": table, "photos": rows}
    return part, rows


# --------------------------------------------------------------------------- part (b)

def downscale(photo: np.ndarray, truth: list, median: float, face_px: float,
              stem: pathlib.Path) -> dict:
    """Writes ``photo`` resized (Lanczos) so its median face is ``face_px`` as
    ``{stem}.png``; returns its facts and the truth faces mapped into it."""
    scale = face_px / median
    w, h = max(1, round(photo.shape[1] * scale)), max(1, round(photo.shape[0] * scale))
    sx, sy = w / photo.shape[1], h / photo.shape[0]
    Image.fromarray(photo).resize((w, h), Image.LANCZOS).save(stem.with_suffix(".png"))
    mapped = []
    for f in truth:
        c = (f.box[:2] + f.box[2:]) / 2
        mapped.append({"centre": [round((c[0] + 0.5) * sx - 0.5, 2),
                                  round((c[1] + 0.5) * sy - 0.5, 2)],
                       "width": round(f.width * sx, 2), "original_width": round(f.width, 1)})
    return {"name": stem.name, "target_face_px": face_px, "scale": round(scale, 5),
            "median_face_px": round(median, 1), "downscaled_size": [w, h], "truth": mapped}


def real_part(work: pathlib.Path) -> dict:
    sources = dict(s.split("=", 1) for s in FLAGS.real_source)
    extras: dict[str, list[float]] = {}
    for spec in FLAGS.real_extra:
        key, px = spec.rsplit("=", 1)
        extras.setdefault(key, []).append(float(px))
    down = work / "real" / "downscaled"
    down.mkdir(parents=True)
    prepared, skipped = [], []
    t0 = time.perf_counter()
    for spec in FLAGS.real:
        label, src = spec.split("=", 1)
        for path in sorted(pathlib.Path(src).iterdir()):
            if path.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            photo = photo_io.load_photo(path)
            found = detect.detect_faces(photo, 5)
            truth = [f for f in found if confirmed(f.cnn_score)]
            base = {"source": label, "photo": path.name, "size": [photo.shape[1], photo.shape[0]],
                    "faces_on_original": len(truth),
                    "unconfirmed_on_original": len(found) - len(truth)}
            if not truth:
                skipped.append({**base, "why": "no confirmed face on the original"})
                continue
            median = statistics.median(f.width for f in truth)
            if median < FLAGS.min_original_face_px:
                skipped.append({**base, "median_face_px": round(median, 1),
                                "why": f"faces already under {FLAGS.min_original_face_px:g} px"})
                continue
            targets = [(FLAGS.target_face_px, f"{label}_{path.stem}")]
            targets += [(px, f"{label}_{path.stem}_{px:g}px")
                        for px in extras.get(f"{label}/{path.name}", [])]
            for px, name in targets:
                prepared.append({**base, **downscale(photo, truth, median, px, down / name)})
    prep_wall = time.perf_counter() - t0
    cmd = run_upsample(down, work / "real" / "out")
    records = photo_records(work / "real" / "out")
    rows = []
    for p in prepared:
        rec = records[p["name"]]
        dets = [face_row(f) for f in rec.get("faces", [])]
        truth = p.pop("truth")

        def inside(t, c):
            return float(np.linalg.norm(c - np.array(t["centre"]))) <= t["width"] / 2
        match(dets, truth, inside)
        rows.append({**p, "output": "output" in rec, "error": rec.get("error"),
                     "photo_psnr": (rec.get("consistency") or {}).get("psnr"),
                     "truth": truth, "detections": dets})
    table = []
    for spec in FLAGS.real:
        label = spec.split("=", 1)[0]
        rs = [r for r in rows if r["source"] == label]
        row = {"source": label, **tally(rs, "faces_on_original"),
               "photos_skipped": sum(s["source"] == label for s in skipped),
               "truth_at_least_20px": sum(t["width"] >= 20 for r in rs for t in r["truth"]),
               "found_at_least_20px": sum(t["found"] and t["width"] >= 20
                                          for r in rs for t in r["truth"])}
        table.append(row)
    return {"sources": sources, "target_face_px": FLAGS.target_face_px,
            "min_original_face_px": FLAGS.min_original_face_px,
            "truth": "faces detect_faces finds on the original with a CNN score of at least "
                     f"{MIN_CNN:g} (the photo run's rule)",
            "prepare_wall_s": round(prep_wall, 1), "run": cmd, "table": table,
            "photos": rows, "skipped": skipped}


# --------------------------------------------------------------------------- pictures

def side_by_side(photo: np.ndarray, ours: np.ndarray, window, n: int, path: pathlib.Path,
                 panel_w: int = 392) -> None:
    """``input (nearest) | bicubic xN | ours xN`` of ``window`` (l, t, r, b input pixels)."""
    l, t, r, b = window
    crop = Image.fromarray(photo[t:b, l:r])
    panels = [crop.resize(((r - l) * n, (b - t) * n), Image.NEAREST),
              crop.resize(((r - l) * n, (b - t) * n), Image.BICUBIC),
              Image.fromarray(ours[t * n:b * n, l * n:r * n])]
    ph = round(panel_w * (b - t) / (r - l))
    labels = ["input (pixels)", f"bicubic x{n}", f"ours x{n}"]
    sheet = Image.new("RGB", (3 * panel_w + 8, ph + 16), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for k, (p, text) in enumerate(zip(panels, labels)):
        sheet.paste(p.resize((panel_w, ph), Image.LANCZOS), (k * (panel_w + 4), 16))
        d.text((k * (panel_w + 4) + 4, 2), text, fill=(0, 0, 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, quality=85)


def pictures(work: pathlib.Path, rows: list[dict]) -> list[str]:
    out_dir = pathlib.Path(FLAGS.pictures)
    folder, records = work / "synthetic" / "photos", photo_records(work / "synthetic" / "out")
    written, seen = [], set()
    for r in rows:
        if r["group"] in seen or not r["output"]:
            continue
        stem = r["photo"][:-4]
        photo = photo_io.load_photo(folder / r["photo"])
        ours = photo_io.load_photo(records[stem]["output"])
        if r["decoys"]:
            window = (50, 115, 410, 205)
        else:
            replaced = [t for t in r["truth"] if t.get("replaced")]
            if not replaced:
                continue
            c = replaced[0]["placement"]["centre"]
            half = max(32, 2 * replaced[0]["placement"]["side"])
            l, t = int(round(c[0] - half)), int(round(c[1] - half))
            l, t = min(max(l, 0), CANVAS[0] - 2 * half), min(max(t, 0), CANVAS[1] - 2 * half)
            window = (l, t, l + 2 * half, t + 2 * half)
        path = out_dir / f"{stem}.jpg"
        side_by_side(photo, ours, window, FLAGS.upscale, path)
        written.append(str(path))
        seen.add(r["group"])
    return written


# --------------------------------------------------------------------------- markdown

def _mm(s: dict) -> str:
    return "-" if s["mean"] is None else f"{s['mean']:.1f} / {s['min']:.1f}"


def markdown(result: dict) -> str:
    lines = []
    if "synthetic" in result:
        p = result["synthetic"]
        lines += [f"Synthetic ({p['run']['wall_s']:.0f} s):", "",
                  "| face side | placed | found | missed | false pos. (replaced) | replaced | "
                  "success | photo PSNR mean / min | face PSNR mean / min | LR sides | "
                  "landmark error % mean / max |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in p["table"]:
            lm = r["landmark_error_pct"]
            lines.append(
                f"| {r['group']} | {r['faces_placed']} | {r['found']} | {r['missed']} | "
                f"{r['false_positives']} ({r['false_positives_replaced']}) | {r['replaced']} | "
                f"{r['success']} | {_mm(r['photo_psnr'])} | {_mm(r['face_psnr'])} | "
                f"{', '.join(f'{k}: {v}' for k, v in r['lr_sizes'].items()) or '-'} | "
                f"{_mm({'mean': lm['mean'], 'min': lm['max']})} |")
        lines.append("")
    if "real" in result:
        p = result["real"]
        lines += [f"Real photos ({p['run']['wall_s']:.0f} s):", "",
                  "| source | photos (skipped) | faces on original | found | missed | "
                  "false pos. (replaced) | replaced | success | photo PSNR mean / min | "
                  "face PSNR mean / min | LR sides |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in p["table"]:
            lines.append(
                f"| {r['source']} | {r['photos']} ({r['photos_skipped']}) | "
                f"{r['faces_on_original']} | {r['found']} | {r['missed']} | "
                f"{r['false_positives']} ({r['false_positives_replaced']}) | {r['replaced']} | "
                f"{r['success']} | {_mm(r['photo_psnr'])} | {_mm(r['face_psnr'])} | "
                f"{', '.join(f'{k}: {v}' for k, v in r['lr_sizes'].items()) or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    work = pathlib.Path(FLAGS.workdir)
    result = {"checkpoint": FLAGS.checkpoint, "upscale": FLAGS.upscale, "min_cnn_score": MIN_CNN,
              "search": "PULSE's defaults: 100 steps, 1 restart, eps 2e-3"}
    rows = []
    if "synthetic" in FLAGS.parts:
        if (work / "synthetic").exists():
            shutil.rmtree(work / "synthetic")
        result["synthetic"], rows = synthetic_part(work)
    if "real" in FLAGS.parts and FLAGS.real:
        if (work / "real" / "downscaled").exists() or (work / "real" / "out").exists():
            raise SystemExit(f"{work / 'real'}/downscaled or out exists: remove them first")
        result["real"] = real_part(work)
    if FLAGS.pictures and rows:
        result["pictures"] = pictures(work, rows)
    # Only file names leave the work folders.
    text = json.dumps(result, indent=1).replace(str(work.resolve()) + "/", "")
    files.atomic_write_text(FLAGS.out, text.replace(str(work) + "/", "") + "\n")
    if FLAGS.markdown:
        files.atomic_write_text(FLAGS.markdown, markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    app.run(main)
