"""Reading photos for alignment: any size, any common mode, upright, as uint8 RGB."""

from __future__ import annotations

import os
import pathlib
import warnings

import numpy as np
from PIL import Image, ImageOps

from pulse_jax.align.errors import AlignError

__all__ = ["load_photo"]


def load_photo(path: str | os.PathLike) -> np.ndarray:
    """One photo as ``[H, W, 3]`` uint8 RGB.

    EXIF orientation is applied (the photo as people see it); grayscale, palette, CMYK and
    16-bit images are converted to 8-bit RGB and an alpha channel is dropped. Pillow's
    decompression-bomb limit (about 179 megapixels) stays on, so one photo never takes more
    than about 0.5 GB.

    Raises:
      AlignError: missing, empty, not an image, truncated or corrupt, or too large.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise AlignError(path, "file not found" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise AlignError(path, "file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img = ImageOps.exif_transpose(img)
                if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grayscale
                    img = Image.fromarray((np.asarray(img, np.uint32) >> 8).astype(np.uint8))
                rgb = np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise AlignError(path, f"image is too large to read safely ({e})") from None
    except (OSError, ValueError, SyntaxError) as e:  # Pillow's unreadable/truncated/corrupt
        raise AlignError(path, f"cannot read the image ({type(e).__name__}: {e})") from None
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise AlignError(path, f"image has no pixels ({rgb.shape[1]}x{rgb.shape[0]})")
    return np.ascontiguousarray(rgb)
