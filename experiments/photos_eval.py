r"""Evidence for photos end to end: ``pulse-jax upsample --align`` on folders of real photos,
per number of restarts; writes the figures as JSON (photo names, no pixels).

  python experiments/photos_eval.py --photos=ordinary=PHOTOS,ffhq10=FFHQ_PHOTOS \
      --restarts=1,4 --workdir=/tmp/photos_eval --out=docs/evidence/photos_default.json

Each ``label=folder`` of ``--photos`` is run as its own command, ``pulse-jax upsample
--input_dir=folder --align --replace_large_faces --config.align_lr_size=8
--checkpoint=CHECKPOINT --config.devices=1 --config.search.restarts=R`` into ``{workdir}/{label}_r{R}``, with PULSE's other defaults
(``--replace_large_faces``: these photos' faces are larger than the shipped model's 64 px,
which photo upsampling leaves alone by default; the figures measure the search on real
faces from the reference's fixed 8x8 LR, as its ``align_face.py`` demo made them). The
committed figures were measured at commit 522cab0, before photo upsampling, when faces whose
crop covered under 64 px were refused; today the same command also searches those.
The JSON records, per folder and R: the photos, the faces dlib found, those refused by the
aligner (with the reason), and for each searched face its photo, index, l2 and success, plus
the totals and the wall time. The photos themselves (other people's pictures) stay in
``--photos`` and ``--workdir``: nothing of them but their file names reaches ``--out``.
docs/align.md lists the photos the committed figures come from.
"""

import json
import pathlib
import time

from absl import app, flags

from pulse_jax import cli, exit_codes, files
from pulse_jax.batch import manifest

FLAGS = flags.FLAGS
flags.DEFINE_list("photos", [], "label=folder pairs of photos")
flags.DEFINE_list("restarts", ["1", "4"], "restarts per face, one run each")
flags.DEFINE_string("checkpoint", "default", "the generator (pulse-jax's --checkpoint)")
flags.DEFINE_string("workdir", "runs/photos_eval", "where the runs' outputs go (not committed)")
flags.DEFINE_string("out", "docs/evidence/photos_default.json", "the JSON of figures")
flags.DEFINE_multi_string("source", [], "where the photos came from, recorded in the JSON")


def summarize(out_dir: pathlib.Path) -> dict:
    """The figures of one ``upsample --align`` output folder."""
    aligned = files.read_jsonl(out_dir / "aligned" / "manifest.jsonl")
    results = {pathlib.Path(r["input"]).name: r for r in manifest.read_records(out_dir)
               if "input" in r}
    faces, refused = [], []
    for a in aligned:
        photo = pathlib.Path(a["input"]).name
        if "error" in a:
            # The reason without this machine's folders: only the photo's name stays.
            reason = a["error"].replace(str(pathlib.Path(a["input"]).parent) + "/", "")
            refused.append({"photo": photo, "face_index": a.get("face_index"),
                            "error": reason})
            continue
        r = results.get(pathlib.Path(a["lr_output"]).name, {})
        faces.append({"photo": photo, "face_index": a["face_index"], "l2": r.get("l2"),
                      "success": r.get("success")})
    l2 = [f["l2"] for f in faces if f["l2"] is not None]
    return {"photos": len({a["input"] for a in aligned}),
            "photos_searched": len({f["photo"] for f in faces}),
            "faces_found": len(faces) + sum(r["face_index"] is not None for r in refused),
            "faces_refused": refused, "faces_searched": len(faces),
            "succeeded": sum(bool(f["success"]) for f in faces),
            "l2_mean": sum(l2) / len(l2) if l2 else None, "faces": faces}


def main(argv):
    del argv
    work, runs = pathlib.Path(FLAGS.workdir), []
    for spec in FLAGS.photos:
        label, folder = spec.split("=", 1)
        for restarts in map(int, FLAGS.restarts):
            out_dir = work / f"{label}_r{restarts}"
            if out_dir.exists():  # a rerun would resume, and its times would mean nothing
                raise SystemExit(f"{out_dir} exists: remove it, or give another --workdir")
            t0 = time.perf_counter()
            code = cli.run(["upsample", f"--input_dir={folder}", f"--output_dir={out_dir}",
                            "--align", "--replace_large_faces", "--config.align_lr_size=8",
                            f"--checkpoint={FLAGS.checkpoint}", "--config.devices=1",
                            f"--config.search.restarts={restarts}"])
            wall = time.perf_counter() - t0
            if code not in (exit_codes.OK, exit_codes.BAD_INPUT, exit_codes.MISSED_EPS):
                raise SystemExit(f"{label}: pulse-jax upsample exited {code}")
            row = {"label": label, "restarts": restarts, "exit_code": code,
                   "wall_s": round(wall, 1), **summarize(out_dir)}
            runs.append(row)
            print(json.dumps({k: v for k, v in row.items() if k not in ("faces",)}), flush=True)
    summary = {"checkpoint": FLAGS.checkpoint, "steps": 100, "runs": runs,
               "sources": list(FLAGS.source),
               "command": "pulse-jax upsample --input_dir=FOLDER --align --checkpoint="
                          f"{FLAGS.checkpoint} --config.devices=1 --config.search.restarts=R"}
    files.atomic_write_text(FLAGS.out, json.dumps(summary, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
