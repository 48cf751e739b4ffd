r"""How well dlib's recogniser separates people at 64x64: the figures in docs/evaluate.md.

  python -m experiments.identity_check --data=../shared/data/utkface64.zip [--faces=60]

On the first ``--faces`` held-out UTKFace faces (the last 300 of the zip by name): how many
have a face the recogniser finds, the distance of each face to its own slight blur
(Gaussian, 0.7 px), and the distances between different faces. Writes the figures to
``docs/evidence/identity_check.json``.
"""

import io
import itertools
import json
import pathlib
import zipfile

from absl import app, flags
import numpy as np
from PIL import Image, ImageFilter

from pulse_jax import evaluate
from experiments.configs.train_utkface64 import HELD_OUT

FLAGS = flags.FLAGS
flags.DEFINE_string("data", "../shared/data/utkface64.zip", "the UTKFace 64x64 zip")
flags.DEFINE_integer("faces", 60, "held-out faces to use")
flags.DEFINE_string("out", "docs/evidence/identity_check.json", "where the figures go")


def main(argv):
    del argv
    with zipfile.ZipFile(FLAGS.data) as z:
        names = sorted(n for n in z.namelist() if n.endswith(".jpg"))[-HELD_OUT:][:FLAGS.faces]
        faces = [np.asarray(Image.open(io.BytesIO(z.read(n))).convert("RGB")) for n in names]
    descs, blur = [], []
    for f in faces:
        try:
            d = evaluate.face_descriptor(f)
        except evaluate.FaceNotFoundError:
            continue
        descs.append(d)
        try:
            b = evaluate.face_descriptor(np.asarray(Image.fromarray(f).filter(
                ImageFilter.GaussianBlur(0.7))))
            blur.append(float(np.linalg.norm(d - b)))
        except evaluate.FaceNotFoundError:
            pass
    other = [float(np.linalg.norm(a - b)) for a, b in itertools.combinations(descs, 2)]
    out = {"command": "python -m experiments.identity_check --data=../shared/data/utkface64.zip "
                      f"--faces={FLAGS.faces}",
           "faces": len(faces), "found": len(descs),
           "blur_distance": {"min": min(blur), "max": max(blur), "median": float(np.median(blur))},
           "other_distance": {"median": float(np.median(other)),
                              "under_threshold": float(np.mean(np.array(other) < 0.6))}}
    pathlib.Path(FLAGS.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    app.run(main)
