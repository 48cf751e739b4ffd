"""Pictures for people to look at: a contact sheet of one face's restarts, a grid of samples.

* :func:`contact_sheet` draws one row, ``LR input | best HR | r0 | r1 | ...``, each tile
  labelled with its l2 (and, given ``eps``, whether it is within it). The batch runner writes
  it as ``{name}_sheet.png`` when asked.
* :func:`image_grid` tiles ``[N, H, W, C]`` images row-major into one image; the trainer and
  the evaluation script draw sample grids with it.

Both return uint8 (contact sheet) or the input dtype (grid) arrays; writing them is
:func:`pulse_jax.images.save_png`'s job.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pulse_jax.images import to_uint8

__all__ = ["contact_sheet", "image_grid"]

_GAP = 6
_BLACK, _GREEN, _RED, _BEST = (0, 0, 0), (0, 130, 0), (200, 0, 0), (230, 160, 0)


def _font(tile: int):
    size = int(min(16, max(10, tile // 16)))
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, ImportError, OSError):  # no FreeType: Pillow's bitmap font
        return ImageFont.load_default()


def _fit(u: np.ndarray, t: int, nearest: bool) -> np.ndarray:
    """Resizes a uint8 [h, h, 3] tile to [t, t, 3]: integer repeats or box-averaging when exact."""
    h = u.shape[0]
    if h == t:
        return u
    if nearest and t % h == 0:
        return np.repeat(np.repeat(u, t // h, axis=0), t // h, axis=1)
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BOX
    return np.asarray(Image.fromarray(u, "RGB").resize((t, t), resample))


#: The spread that :func:`colour_map` draws brightest: one fixed scale, so maps of
#: different faces compare (a luminance deviation of 0.25 is a quarter of the range).
VARIABILITY_RANGE = 0.25

# Black, purple, red-orange, yellow, pale yellow: a perceptually ordered ramp (dark = agree).
_RAMP = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                 np.float64)


def colour_map(spread: Any, value_range: float = VARIABILITY_RANGE) -> np.ndarray:
    """``[R, R]`` variability (:mod:`pulse_jax.search.variability`) -> ``[R, R, 3]`` uint8:
    dark where the restarts agree, bright where they differ, on the fixed scale
    0 .. ``value_range``."""
    t = np.clip(np.nan_to_num(np.asarray(spread, np.float64)) / value_range, 0.0, 1.0)
    x = t * (len(_RAMP) - 1)
    i = np.minimum(x.astype(int), len(_RAMP) - 2)
    f = (x - i)[..., None]
    return np.rint(_RAMP[i] * (1 - f) + _RAMP[i + 1] * f).astype(np.uint8)


def variability_pair(hr: Any, spread: Any) -> np.ndarray:
    """The face ``[R, R, 3]`` and its variability map ``[R, R]`` side by side,
    ``[R, 2R + gap, 3]`` uint8 (a white gap of R / 32 px, at least 2)."""
    face = to_uint8(hr)
    tile = colour_map(spread)
    if tile.shape[:2] != face.shape[:2]:
        raise ValueError(f"map {tile.shape[:2]} and face {face.shape[:2]} differ in size")
    gap = np.full((face.shape[0], max(2, face.shape[0] // 32), 3), 255, np.uint8)
    return np.concatenate([face, gap, tile], axis=1)


def contact_sheet(
    lr: Any,
    best_hr: Any,
    restarts_hr: Any,
    restart_l2: Any,
    best_index: int,
    eps: float | None = None,
    *,
    tile_size: int = 256,
    return_boxes: bool = False,
    variability: Any = None,
) -> np.ndarray | tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Draws one face's restarts as a single labelled row, for a quick look.

    Layout (left to right): the LR input (nearest-neighbour upscaled to the tile size), the best
    HR, then every restart's HR; under each tile a label: ``"LR input" / "32x32 (x32)"``,
    ``"best (r3)" / "l2=0.00191"``, ``"r0" / "l2=0.00342 ok"``. With ``eps``, each l2 line ends
    in ``ok`` (green, l2 <= eps) or ``>eps`` (red). The best restart's tile has an orange frame in
    the gap around it. Tiles are ``T = min(R, tile_size)`` pixels; a larger HR is box-averaged
    down to it. Floats are converted with ``to_uint8`` (truncation), as saved PNGs are, so tile
    pixels equal the saved images' pixels when no downscaling is needed.

    Args:
      lr: ``[S, S, 3]`` float in ``[0, 1]`` (or uint8), the LR input.
      best_hr: ``[R, R, 3]``, the face's chosen HR.
      restarts_hr: ``[N, R, R, 3]`` (or a sequence of ``[R, R, 3]``), every restart's HR.
      restart_l2: ``[N]`` floats, each restart's l2 (NaN allowed).
      best_index: which restart ``best_hr`` came from, in ``[0, N)``.
      eps: success threshold; ``None`` draws no ok/>eps marks.
      tile_size: the largest tile side in pixels.
      return_boxes: also return each tile's ``(x0, y0, x1, y1)`` box (exclusive ends), in
        order LR, best, r0..r(N-1) (then the map).
      variability: ``[R, R]`` the restarts' spread (``Result.variability[i]``), drawn as a
        last tile labelled with its mean (:func:`colour_map`); None: no such tile.

    Returns:
      uint8 ``[H, W, 3]`` RGB sheet (and the boxes if asked).
    """
    lr_u, best_u = to_uint8(lr), to_uint8(best_hr)
    rest_u = [to_uint8(r) for r in restarts_hr]
    l2 = np.asarray(restart_l2, dtype=np.float64).reshape(-1)
    best_index = _check(lr_u, best_u, rest_u, l2, best_index)
    t = int(min(best_u.shape[0], tile_size))
    labels = _labels(lr_u.shape[0], best_u.shape[0], l2, best_index, eps)
    tiles = [_fit(lr_u, t, True), _fit(best_u, t, False)] + [_fit(u, t, False) for u in rest_u]
    if variability is not None:
        spread = np.asarray(variability, np.float64)
        tiles.append(_fit(colour_map(spread), t, False))
        labels.append([("variability", _BLACK), (f"mean {spread.mean():.4f}", _BLACK)])

    font = _font(t)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = probe.textbbox((0, 0), "Ag(0)", font=font)[3] + 3
    text_w = max(probe.textlength(txt, font=font) for lab in labels for txt, _ in lab)
    col_w = max(t, int(math.ceil(text_w)) + 4)
    width = _GAP + len(tiles) * (col_w + _GAP)
    height = _GAP + t + 4 + 2 * line_h + _GAP

    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    boxes = []
    for k, (tile, lab) in enumerate(zip(tiles, labels)):
        cx = _GAP + k * (col_w + _GAP)
        x0 = cx + (col_w - t) // 2
        y0 = _GAP
        boxes.append((x0, y0, x0 + t, y0 + t))
        if k == best_index + 2:
            draw.rectangle((x0 - 3, y0 - 3, x0 + t + 2, y0 + t + 2), outline=_BEST, width=2)
        for j, (txt, colour) in enumerate(lab):
            tw = probe.textlength(txt, font=font)
            draw.text((cx + (col_w - tw) / 2, y0 + t + 4 + j * line_h), txt, fill=colour,
                      font=font)
    out = np.array(sheet)
    for (x0, y0, x1, y1), tile in zip(boxes, tiles):
        out[y0:y1, x0:x1] = tile
    return (out, boxes) if return_boxes else out


def _check(lr_u: np.ndarray, best_u: np.ndarray, rest_u: list[np.ndarray], l2: np.ndarray,
           best_index: int) -> int:
    n = len(rest_u)
    if n == 0 or l2.size != n:
        raise ValueError(f"need one l2 per restart and at least one restart; got {n} images "
                         f"and {l2.size} l2 values")
    if not 0 <= int(best_index) < n:
        raise ValueError(f"best_index {best_index} is outside [0, {n})")
    for name, u in [("lr", lr_u), ("best_hr", best_u)] + [(f"restart {i}", u)
                                                          for i, u in enumerate(rest_u)]:
        if u.ndim != 3 or u.shape[-1] != 3 or u.shape[0] != u.shape[1]:
            raise ValueError(f"{name}: expected a square [H, H, 3] image, got {u.shape}")
    if any(u.shape != best_u.shape for u in rest_u):
        raise ValueError("every restart must have best_hr's shape "
                         f"{best_u.shape}; got {[u.shape for u in rest_u]}")
    return int(best_index)


def _labels(s: int, r: int, l2: np.ndarray, best_index: int, eps: float | None
            ) -> list[list[tuple[str, tuple[int, int, int]]]]:
    """Two (text, colour) lines under each tile: LR, best, r0, r1, ..."""
    def mark(v: float) -> tuple[str, tuple[int, int, int]]:
        if eps is None:
            return "", _BLACK
        return (" ok", _GREEN) if v <= eps else (" >eps", _RED)

    factor = f" (x{r // s})" if r % s == 0 else ""
    labels = [[("LR input", _BLACK), (f"{s}x{s}{factor}", _BLACK)]]
    m, c = mark(l2[best_index])
    labels.append([(f"best (r{best_index})", _BLACK), (f"l2={l2[best_index]:.3g}{m}", c)])
    for i in range(l2.size):
        m, c = mark(l2[i])
        labels.append([(f"r{i}" + (" (best)" if i == best_index else ""), _BLACK),
                       (f"l2={l2[i]:.3g}{m}", c)])
    return labels


def image_grid(images: np.ndarray, cols: Optional[int] = None, pad: int = 0) -> np.ndarray:
    """``[N, H, W, C]`` -> one ``[rows * H, cols * W, C]`` image (row-major; blanks are 0)."""
    n, h, w, c = images.shape
    cols = cols or int(math.ceil(math.sqrt(n)))
    rows = -(-n // cols)
    grid = np.zeros((rows * (h + pad) - pad, cols * (w + pad) - pad, c), images.dtype)
    for i in range(n):
        r, q = divmod(i, cols)
        grid[r * (h + pad): r * (h + pad) + h, q * (w + pad): q * (w + pad) + w] = images[i]
    return grid
