"""NVIDIA's FFHQ crop recipe: a photo and a quad in, a square aligned face out.

The steps are the FFHQ dataset's (and so PULSE's ``align_face.py``; docs/reference.md and
docs/align.md describe them), for any output size:

1. **Shrink**: when the quad is more than twice the output size (``shrink = floor(qsize /
   size / 2) > 1``), the photo is first reduced by ``shrink`` with Lanczos, so the later steps
   work on at most a few times the output's pixels whatever the photo's size.
2. **Crop** to the quad's bounding box plus a border of ``max(rint(0.1 qsize), 3)`` px.
3. **Pad**: when the quad reaches more than ``border - 4`` px past the photo's edge, reflect-
   pad by ``max(pad, rint(0.3 qsize))`` and blend the padding towards a Gaussian blur
   (sigma ``0.02 qsize``) and then the median colour, increasingly with distance outside.
4. **Transform**: Pillow's bilinear ``QUAD`` transform to ``transform_size`` (the reference:
   4096 for 1024, so 4x the output by default), then a Lanczos resize to ``size``.

Pillow >= 10 has no ``ANTIALIAS``; ``LANCZOS`` is the same filter.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from pulse_jax.align.quad import quad_size

__all__ = ["crop_quad"]


def _shrink(img: Image.Image, quad: np.ndarray, qsize: float, size: int
            ) -> tuple[Image.Image, np.ndarray, float]:
    shrink = int(np.floor(qsize / size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(float(img.size[0]) / shrink)),
                 int(np.rint(float(img.size[1]) / shrink)))
        img = img.resize(rsize, Image.LANCZOS)
        quad, qsize = quad / shrink, qsize / shrink
    return img, quad, qsize


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    """The quad's bounding box (left, top, right, bottom), outwards to whole pixels."""
    return (int(np.floor(min(quad[:, 0]))), int(np.floor(min(quad[:, 1]))),
            int(np.ceil(max(quad[:, 0]))), int(np.ceil(max(quad[:, 1]))))


def _crop(img: Image.Image, quad: np.ndarray, border: int) -> tuple[Image.Image, np.ndarray]:
    b = _bounds(quad)
    box = (max(b[0] - border, 0), max(b[1] - border, 0), min(b[2] + border, img.size[0]),
           min(b[3] + border, img.size[1]))
    if box[2] - box[0] < img.size[0] or box[3] - box[1] < img.size[1]:
        img = img.crop(box)
        quad = quad - box[0:2]
    return img, quad


def _pad_blend(img: Image.Image, quad: np.ndarray, qsize: float, border: int
               ) -> tuple[Image.Image, np.ndarray]:
    """Step 3: reflect-pad where the quad leaves the image, fading to blur and median."""
    b = _bounds(quad)
    pad = (max(-b[0] + border, 0), max(-b[1] + border, 0), max(b[2] - img.size[0] + border, 0),
           max(b[3] - img.size[1] + border, 0))
    if max(pad) <= border - 4:
        return img, quad
    pad = np.maximum(pad, int(np.rint(qsize * 0.3)))
    a = np.pad(np.float32(img), ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), "reflect")
    h, w, _ = a.shape
    y, x, _ = np.ogrid[:h, :w, :1]
    # 0 inside the photo, rising to 1 at the padded image's edge.
    mask = np.maximum(1.0 - np.minimum(np.float32(x) / pad[0], np.float32(w - 1 - x) / pad[2]),
                      1.0 - np.minimum(np.float32(y) / pad[1], np.float32(h - 1 - y) / pad[3]))
    blur = qsize * 0.02
    a += (ndimage.gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    img = Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")
    return img, quad + pad[:2]


def crop_quad(photo: np.ndarray, quad: np.ndarray, size: int, *,
              qsize: float | None = None, transform_size: int | None = None,
              enable_padding: bool = True) -> np.ndarray:
    """The ``size x size`` crop of ``photo`` that ``quad`` outlines, by NVIDIA's recipe.

    Args:
      photo: ``[H, W, 3]`` uint8 RGB.
      quad: ``[4, 2]`` photo pixels, TL, BL, BR, TR (:mod:`pulse_jax.align.quad`).
      size: the output side in pixels.
      qsize: the quad's side as the reference computed it (``ffhq_quad`` returns it; the
        shrink, border and padding amounts round it); default: measured from ``quad``.
      transform_size: the side of the intermediate ``QUAD`` transform; default ``4 * size``
        (the reference's 4096 for 1024). Sizes at or below ``size`` skip the final resize.
      enable_padding: step 3 (the reference: on).

    Returns:
      ``[size, size, 3]`` uint8.
    """
    photo = np.asarray(photo)
    if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
        raise ValueError(f"photo must be uint8 [H, W, 3], got {photo.dtype} {photo.shape}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    quad = np.array(quad, np.float64)
    qsize = quad_size(quad) if qsize is None else float(qsize)
    transform_size = 4 * size if transform_size is None else int(transform_size)
    img = Image.fromarray(photo, "RGB")
    img, quad, qsize = _shrink(img, quad, qsize, size)
    border = max(int(np.rint(qsize * 0.1)), 3)
    img, quad = _crop(img, quad, border)
    if enable_padding:
        img, quad = _pad_blend(img, quad, qsize, border)
    img = img.transform((transform_size, transform_size), Image.QUAD,
                        (quad + 0.5).flatten(), Image.BILINEAR)
    if size < transform_size:
        img = img.resize((size, size), Image.LANCZOS)
    return np.asarray(img)
