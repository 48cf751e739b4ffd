r"""How well ``pulse_jax.align`` recovers faces whose FFHQ alignment is known.

::

  python benchmarks/align_eval.py [--data=../shared/data/ffhq10] [--size=512]
  python benchmarks/align_eval.py --print_template   # FFHQ_POINTS5 in pulse_jax/align/framing.py
  python benchmarks/align_eval.py --fit_ffhq5='faces/*.png'   # FFHQ_FROM_5, same file

Every FFHQ face of ``--data`` (already aligned by NVIDIA's recipe) is placed into a larger
synthetic photo under a known rotation, scale and shift, beside two smaller FFHQ faces, and
the photo is aligned again with the 68-point recipe (the reference's) and the 5-point
recipe (our default: eyes and mouth estimated from 5 points). For each it prints, per face
and on average:

- landmark error: the 5-point model's points on the re-aligned crop against those on the
  original crop, mean over the 5 points, in % of the crop side;
- PSNR (dB) of the re-aligned crop against the original resized to ``--size`` (central
  80%);
- 5 vs 68: the largest distance between the two quads' corners (% of the crop side), and the
  PSNR between the two crops.

The FFHQ images are non-commercial research data: they are read from ``--data`` and never
stored. About a minute on 2 CPU cores.
"""

from __future__ import annotations

import glob
import pathlib

import numpy as np
from absl import app, flags
from PIL import Image

from pulse_jax.align import aligner, detect, framing, quad as quads, template

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/ffhq10", "folder of FFHQ-aligned faces")
flags.DEFINE_integer("size", 512, "crop side")
flags.DEFINE_bool("print_template", False, "estimate the FFHQ 5-point template and exit")
flags.DEFINE_string("fit_ffhq5", None, "glob of face images (one face each, not --data's): "
                    "fit the 5-point model of the FFHQ recipe's eyes and mouth, print it and exit")

# (rotation degrees counter-clockwise, face side in the photo, top-left of the pasted face)
PLACEMENTS = [(0.0, 600, (300, 250)), (17.0, 520, (700, 300)), (-23.0, 460, (150, 380)),
              (8.0, 700, (500, 150)), (-9.0, 560, (820, 420))]
CANVAS = (1900, 1200)


def place(canvas: Image.Image, face: Image.Image, angle: float, side: int,
          at: tuple[int, int]) -> None:
    """Pastes ``face`` resized to ``side`` and rotated by ``angle`` (about its centre, the
    corners cut off by a square mask turned with it) at ``at``."""
    f = face.resize((side, side), Image.LANCZOS)
    mask = Image.new("L", f.size, 255).rotate(angle, Image.BICUBIC, expand=True)
    canvas.paste(f.rotate(angle, Image.BICUBIC, expand=True), at, mask)


def background(seed: int) -> Image.Image:
    """A smooth random colour field, ``CANVAS`` sized."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(30, 220, (6, 8, 3)).astype(np.uint8)
    return Image.fromarray(small).resize(CANVAS, Image.BICUBIC)


def points_on(crop: np.ndarray) -> np.ndarray | None:
    """The 5-point model's points on a crop, in [0, 1] crop coordinates (the face box found
    on a copy reduced to 256 px, where the HOG detector finds every FFHQ crop's face)."""
    found = detect.detect_faces(crop, 5, max_detect_side=256, min_face_px=0, verify=False)
    if not found:
        return None
    best = max(found, key=lambda f: f.box[2] - f.box[0])
    return (best.landmarks + 0.5) / crop.shape[0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) over the central 80% of two crops: their outer rim holds the synthetic
    photo's background wherever the crop reaches past the pasted face."""
    m = a.shape[0] // 10
    a, b = a[m:-m, m:-m], b[m:-m, m:-m]
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def target_face(results: list, centre: np.ndarray) -> aligner.AlignedFace | None:
    """The aligned face whose crop centre is nearest ``centre`` (photo pixels)."""
    faces = [r for r in results if isinstance(r, aligner.AlignedFace)]
    if not faces:
        return None
    return min(faces, key=lambda f: np.hypot(*(quads.unit_to_photo([0.5, 0.5], f.quad)
                                                - centre)))


def evaluate(paths: list[pathlib.Path], size: int) -> None:
    rows = []
    for i, path in enumerate(paths):
        face = Image.open(path).convert("RGB")
        angle, side, at = PLACEMENTS[i % len(PLACEMENTS)]
        canvas = background(i)
        for j, (x, y) in enumerate([(1580, 20), (1580, 860)]):
            place(canvas, Image.open(paths[(i + j + 1) % len(paths)]).convert("RGB"),
                  0.0, 300, (x, y))
        place(canvas, face, angle, side, at)
        photo = np.asarray(canvas)
        rotated = side * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))
        centre = np.array(at) + rotated / 2
        original = np.asarray(face.resize((size, size), Image.LANCZOS))
        ref_points = points_on(original)
        got = {}
        for n in (68, 5):
            r = target_face(aligner.align_photo(photo, size, num_landmarks=n), centre)
            p = points_on(r.image) if r is not None else None
            err = np.hypot(*(p - ref_points).T).mean() * 100 if p is not None else np.nan
            got[n] = (r, err, psnr(r.image, original) if r is not None else np.nan)
        corner = np.hypot(*(got[5][0].quad - got[68][0].quad).T).max() \
            / quads.quad_size(got[68][0].quad) * 100
        rows.append([got[68][1], got[68][2], got[5][1], got[5][2], corner,
                     psnr(got[5][0].image, got[68][0].image)])
        print(f"{path.name}: rot {angle:+5.1f} side {side}: 68: {rows[-1][0]:.2f}% "
              f"{rows[-1][1]:.1f} dB | 5: {rows[-1][2]:.2f}% {rows[-1][3]:.1f} dB | "
              f"5 vs 68: corners {corner:.2f}%, {rows[-1][5]:.1f} dB")
    m = np.nanmean(np.array(rows), axis=0)
    print(f"mean over {len(rows)} faces at {size}px: 68-point recipe: landmarks {m[0]:.2f}% "
          f"of the crop, PSNR {m[1]:.1f} dB; 5-point recipe: {m[2]:.2f}%, {m[3]:.1f} dB; "
          f"5 vs 68: corners {m[4]:.2f}% of the crop, PSNR {m[5]:.1f} dB")


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.fit_ffhq5:
        fit_paths = sorted(glob.glob(FLAGS.fit_ffhq5))
        coef, used = template.fit_ffhq5(np.asarray(Image.open(p).convert("RGB"))
                                        for p in fit_paths)
        print(f"FFHQ_FROM_5 from {len(fit_paths)} images ({used} faces with mirrors):")
        print(np.array2string(np.round(coef, 5), separator=", "))
        return
    paths = sorted(pathlib.Path(FLAGS.data).glob("*.png"))
    if not paths:
        raise app.UsageError(f"no PNG faces in {FLAGS.data}")
    if FLAGS.print_template:
        faces = (np.asarray(Image.open(p).convert("RGB")) for p in paths)
        tpl = template.estimate_template(faces, "ffhq", mirror=True)
        print("points5", np.round(tpl.points5, 4).tolist())
        print("points68", np.round(tpl.points68, 4).tolist())
        print("notes", tpl.notes)
        print("in use ", np.round(framing.FFHQ_POINTS5, 4).tolist())
        return
    evaluate(paths, FLAGS.size)


if __name__ == "__main__":
    app.run(main)
