"""The synthetic photos of experiments/photo_upscale_eval.py: committable faces (the shipped
model's own) pasted, turned and scaled, into noisy backgrounds beside face-like decoys, each
photo with the ground truth of where its faces are."""

from __future__ import annotations

import math
import pathlib

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pulse_jax.align import detect

CANVAS = (480, 320)          # (W, H) of a synthetic photo
DECOY_FACE_SIDE = 32
REFERENCE_SIDE = 256         # the 64x64 faces are upscaled to this for reference landmarks


# --------------------------------------------------------------------------- placement

def rotation(angle_deg: float) -> np.ndarray:
    """The 2x2 matrix turning a face counter-clockwise as seen (x right, y down)."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, s], [-s, c]])


class Placement:
    """A face of the 64x64 original placed in a photo: resized to ``side`` (Lanczos), turned
    by ``angle`` about its centre, its centre at ``centre`` (photo pixels; pixel centres at
    integers everywhere)."""

    def __init__(self, face_index: int, side: int, angle: float, centre: np.ndarray):
        self.face_index, self.side, self.angle = face_index, side, angle
        self.centre = np.asarray(centre, np.float64)
        self.matrix = rotation(angle)

    def _face_centre(self) -> np.ndarray:
        return np.full(2, (self.side - 1) / 2.0)

    def from_original(self, xy64: np.ndarray) -> np.ndarray:
        """Points of the 64x64 original -> photo pixels."""
        q = (np.asarray(xy64, np.float64) + 0.5) * self.side / 64.0 - 0.5
        return self.centre + (q - self._face_centre()) @ self.matrix.T

    def to_face(self, xy: np.ndarray) -> np.ndarray:
        """Photo pixels -> pixels of the resized (unturned) face."""
        return self._face_centre() + (np.asarray(xy, np.float64) - self.centre) @ self.matrix

    def contains(self, xy) -> bool:
        """Whether photo point ``xy`` lies on the pasted (turned) square."""
        q = self.to_face(np.asarray(xy, np.float64)[None])[0] - self._face_centre()
        return bool(np.all(np.abs(q) <= self.side / 2.0))

    def record(self) -> dict:
        return {"face": self.face_index, "side": self.side, "angle": round(self.angle, 2),
                "centre": [round(float(v), 2) for v in self.centre]}


def paste(canvas: np.ndarray, face64: np.ndarray, p: Placement) -> None:
    """Draws ``face64`` into ``canvas`` (float [H, W, 3]) at ``p``: Lanczos resize to the
    side, then the turned square sampled by cubic splines with a one-pixel soft edge."""
    side = p.side
    face = np.asarray(Image.fromarray(face64).resize((side, side), Image.LANCZOS), np.float64)
    r = side * 0.75 + 2
    x0, y0 = int(math.floor(p.centre[0] - r)), int(math.floor(p.centre[1] - r))
    x1, y1 = int(math.ceil(p.centre[0] + r)) + 1, int(math.ceil(p.centre[1] + r)) + 1
    ys, xs = np.mgrid[y0:y1, x0:x1]
    q = p.to_face(np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float64))
    d = np.abs(q - p._face_centre())
    alpha = np.clip(side / 2.0 + 0.5 - d, 0.0, 1.0).prod(axis=1).reshape(xs.shape)
    sampled = np.stack([ndimage.map_coordinates(face[..., c], [q[:, 1], q[:, 0]], order=3,
                                                mode="nearest").reshape(xs.shape)
                        for c in range(3)], -1)
    region = canvas[y0:y1, x0:x1]
    region[:] = alpha[..., None] * sampled + (1 - alpha[..., None]) * region


def background(rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour field, float [H, W, 3]."""
    small = rng.uniform(40, 215, (4, 6, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize(CANVAS, Image.BICUBIC), np.float64)


def centres(rng: np.random.Generator, n: int, side: int) -> list[np.ndarray]:
    """``n`` face centres in the canvas, apart from each other and from the border."""
    margin, gap = 1.3 * side + 6, 2.6 * side + 12
    for _ in range(10000):
        pts = [rng.uniform([margin, margin], [CANVAS[0] - margin, CANVAS[1] - margin])
               for _ in range(n)]
        if all(np.linalg.norm(a - b) >= gap for i, a in enumerate(pts) for b in pts[:i]):
            return pts
    raise RuntimeError(f"cannot place {n} faces of {side} px apart in {CANVAS}")


def draw_decoys(img: Image.Image) -> list[dict]:
    """Three face-like things: a round badge (ring, two dots, a curved mouth), a cartoon
    face and a line-drawn face sketch; returns their kinds and boxes ``[l, t, r, b]``."""
    d = ImageDraw.Draw(img)
    decoys = []
    cx, cy, r = 180, 160, 22                                   # the badge
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(200, 170, 60), outline=(40, 40, 90),
              width=3)
    for ex in (cx - 8, cx + 8):
        d.ellipse([ex - 3, cy - 8, ex + 3, cy - 2], fill=(25, 25, 25))
    d.arc([cx - 10, cy - 4, cx + 10, cy + 12], 20, 160, fill=(25, 25, 25), width=2)
    decoys.append({"kind": "badge", "box": [cx - r, cy - r, cx + r, cy + r]})
    cx, cy, r = 270, 160, 20                                   # the cartoon face
    d.ellipse([cx - r, cy - r - 2, cx + r, cy + r + 2], fill=(236, 196, 160),
              outline=(90, 60, 40), width=2)
    d.chord([cx - r - 1, cy - r - 4, cx + r + 1, cy - 2], 180, 360, fill=(70, 45, 30))
    for ex in (cx - 7, cx + 7):
        d.ellipse([ex - 4, cy - 2, ex + 4, cy + 3], fill=(255, 255, 255))
        d.ellipse([ex - 2, cy - 1, ex + 2, cy + 3], fill=(30, 30, 30))
    d.line([cx, cy + 3, cx - 2, cy + 8, cx + 1, cy + 9], fill=(150, 100, 80), width=1)
    d.arc([cx - 8, cy + 4, cx + 8, cy + 15], 20, 160, fill=(150, 40, 40), width=2)
    decoys.append({"kind": "cartoon", "box": [cx - r, cy - r - 2, cx + r, cy + r + 2]})
    cx, cy, r = 370, 160, 20                                   # the sketch: oval, hair, ...
    d.ellipse([cx - r * 0.8, cy - r, cx + r * 0.8, cy + r], fill=(230, 190, 160),
              outline=(60, 40, 30), width=2)
    d.chord([cx - r * 0.85, cy - r * 1.05, cx + r * 0.85, cy - r * 0.2], 180, 360,
            fill=(50, 35, 25))
    for side in (-1, 1):                                       # brows and eyes
        ex = cx + side * r * 0.35
        d.line([ex - r * 0.2, cy - r * 0.25, ex + r * 0.2, cy - r * 0.28], fill=(40, 30, 20),
               width=2)
        d.ellipse([ex - r * 0.15, cy - r * 0.12, ex + r * 0.15, cy + r * 0.05],
                  fill=(245, 245, 245))
        d.ellipse([ex - r * 0.07, cy - r * 0.09, ex + r * 0.07, cy + r * 0.04],
                  fill=(20, 20, 20))
    d.line([cx, cy, cx - r * 0.1, cy + r * 0.35, cx + r * 0.08, cy + r * 0.4],
           fill=(120, 80, 60), width=2)                        # nose
    d.arc([cx - r * 0.35, cy + r * 0.35, cx + r * 0.35, cy + r * 0.7], 10, 170,
          fill=(150, 50, 50), width=2)                         # mouth
    decoys.append({"kind": "sketch", "box": [cx - r, cy - r - 1, cx + r, cy + r]})
    return decoys


def make_synthetic(folder: pathlib.Path, faces64: list[np.ndarray], sizes: list[int],
                   photos_per_size: int, max_angle: float, seed: int) -> list[dict]:
    """Writes the synthetic photos into ``folder`` (``photos_per_size`` per face side, faces
    turned by up to ``max_angle`` degrees, plus one photo of decoys); returns one spec per
    photo."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    specs = []
    for side in sizes:
        for k in range(photos_per_size):
            canvas = background(rng)
            pls = [Placement(i, side, float(rng.uniform(-max_angle, max_angle)), c)
                   for i, c in enumerate(centres(rng, len(faces64), side))]
            for p in pls:
                paste(canvas, faces64[p.face_index], p)
            name = f"syn_{side:02d}px_{k}"
            Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8)).save(
                folder / f"{name}.png")
            specs.append({"name": name, "group": f"{side} px", "side": side,
                          "placements": pls, "decoys": []})
    canvas = background(rng)
    p = Placement(0, DECOY_FACE_SIDE, float(rng.uniform(-max_angle, max_angle)),
                  np.array([90.0, 160.0]))
    paste(canvas, faces64[0], p)
    img = Image.fromarray(np.clip(np.round(canvas), 0, 255).astype(np.uint8))
    decoys = draw_decoys(img)
    img.save(folder / "syn_decoys.png")
    specs.append({"name": "syn_decoys", "group": "decoys", "side": DECOY_FACE_SIDE,
                  "placements": [p], "decoys": decoys})
    return specs


def reference_landmarks(face64: np.ndarray) -> np.ndarray:
    """dlib's 5 points of a 64x64 face, found on it upscaled to 256 (Lanczos), in 64x64
    pixels."""
    big = np.asarray(Image.fromarray(face64).resize((REFERENCE_SIDE,) * 2, Image.LANCZOS))
    found = detect.detect_faces(big, 5, min_face_px=0)
    if not found:
        raise RuntimeError("no face found on an upscaled reference face")
    best = max(found, key=lambda f: f.width)
    return (best.landmarks + 0.5) * 64.0 / REFERENCE_SIDE - 0.5
