r"""Small faces: dlib's HOG detector (our two passes) against its MMOD CNN detector run on the
whole photo, for faces of 16 to 48 px; prints found / placed and seconds per photo.

  python benchmarks/detect_bench.py [--sizes=16,20,24,32,48] [--photos=2]

The photos are 480x320 with the three committable faces of tests/data/align (samples of the
shipped model, whose face box is about the pasted side) on a smooth random background. A face
counts as found when a detection's box centre lies on it. The CNN on the whole photo is what
``pulse_jax.align.detect`` does *not* do: it only checks each HOG box on a 250 px patch, which
is why it is timed here.
"""

from __future__ import annotations

import pathlib
import time

import numpy as np
from absl import app, flags
from PIL import Image

from pulse_jax.align import detect

FLAGS = flags.FLAGS
flags.DEFINE_list("sizes", ["16", "20", "24", "32", "48"], "pasted face sides, px")
flags.DEFINE_integer("photos", 2, "photos per size")

DATA = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "align"


def scene(side: int, seed: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    rng = np.random.default_rng(seed)
    canvas = Image.fromarray(rng.uniform(40, 200, (5, 7, 3)).astype(np.uint8)).resize(
        (480, 320), Image.BICUBIC)
    places = [(int(40 + 150 * k + rng.integers(0, 40)), int(rng.integers(40, 240)))
              for k in range(3)]
    for k, at in enumerate(places):
        face = Image.open(DATA / f"utkface64_sample_{k}.png").convert("RGB")
        canvas.paste(face.resize((side, side), Image.BICUBIC), at)
    return np.asarray(canvas), places


def hits(boxes: list, places: list, side: int) -> tuple[int, int]:
    """(faces found, other detections)."""
    found, other = set(), 0
    for l, t, r, b in boxes:
        cx, cy = (l + r) / 2, (t + b) / 2
        on = [i for i, (x, y) in enumerate(places) if x <= cx <= x + side and y <= cy <= y + side]
        found.update(on)
        other += not on
    return len(found), other


def main(argv):
    del argv
    hog, cnn = detect._hog(), detect._cnn()
    methods = {
        "HOG, reference pass (upsample 1)": lambda a: [
            (r.left(), r.top(), r.right(), r.bottom()) for r in hog(a, 1)],
        "HOG, our two passes (detect_faces, no check)": lambda a: [
            tuple(f.box) for f in detect.detect_faces(a, verify=False)],
        "HOG two passes + CNN check (the default)": lambda a: [
            tuple(f.box) for f in detect.detect_faces(a) if (f.cnn_score or 0) >= 0.5],
        "CNN on the whole photo, upsample 1": lambda a: [
            (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in cnn(a, 1)],
        "CNN on the whole photo, upsample 2": lambda a: [
            (d.rect.left(), d.rect.top(), d.rect.right(), d.rect.bottom()) for d in cnn(a, 2)],
    }
    print("| method | " + " | ".join(f"{s} px" for s in FLAGS.sizes) + " | s per photo |")
    print("| --- |" + " --- |" * (len(FLAGS.sizes) + 1))
    scenes = {int(s): [scene(int(s), i) for i in range(FLAGS.photos)] for s in FLAGS.sizes}
    for name, run in methods.items():
        cells, total_t, n = [], 0.0, 0
        for side, photos in scenes.items():
            found = other = placed = 0
            for a, places in photos:
                t0 = time.perf_counter()
                boxes = run(a)
                total_t += time.perf_counter() - t0
                n += 1
                f, o = hits(boxes, places, side)
                found, other, placed = found + f, other + o, placed + len(places)
            cells.append(f"{found}/{placed}" + (f" (+{other} other)" if other else ""))
        print(f"| {name} | " + " | ".join(cells) + f" | {total_t / n:.2f} |", flush=True)


if __name__ == "__main__":
    app.run(main)
