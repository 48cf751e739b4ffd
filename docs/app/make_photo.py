"""Makes docs/app/photo.png, the app's example photo: two faces drawn by our own shipped
64x64 model (tests/data/align, committable) placed small (26 and 30 px) on a smooth
background, so that the photo path has faces below the model's resolution to replace.

    python docs/app/make_photo.py
"""

import pathlib

import numpy as np
from PIL import Image

ROOT = pathlib.Path(__file__).resolve().parents[2]
FACES = ROOT / "tests" / "data" / "align"

rng = np.random.default_rng(3)
canvas = Image.fromarray(rng.uniform(60, 190, (4, 6, 3)).astype(np.uint8)).resize(
    (240, 160), Image.BICUBIC)
for k, (side, at) in enumerate([(26, (50, 60)), (30, (150, 50))]):
    face = Image.open(FACES / f"utkface64_sample_{k}.png").convert("RGB")
    canvas.paste(face.resize((side, side), Image.BICUBIC), at)
canvas.save(pathlib.Path(__file__).with_name("photo.png"), optimize=True)
