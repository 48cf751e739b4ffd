"""Reading an upload safely: its size and pixel count are checked before it is decoded, so a
decompression bomb is refused with a message instead of filling the server's memory, and a
file that is not an image, or is truncated, is named as such."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
import warnings

from PIL import Image, UnidentifiedImageError

__all__ = ["FORMATS", "Limits", "Upload", "UploadError", "read_upload", "safe_stem"]

#: What the app reads (Pillow's format names): the photos people have, nothing exotic.
FORMATS = ("PNG", "JPEG", "WEBP")


class UploadError(ValueError):
    """A request the app refuses, with the sentence shown in the page."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request may ask for.

    Attributes:
      max_bytes: the largest upload (also given to Gradio, which refuses it on arrival).
      max_pixels: the most pixels an uploaded image may have (checked from its header,
        before decoding).
      max_output_pixels: the most pixels of an output photo (input pixels x upscale^2).
      max_steps, max_restarts, max_upscale: the largest search settings a request may ask.
    """

    max_bytes: int = 20 * 2**20
    max_pixels: int = 4096 * 4096
    max_output_pixels: int = 8192 * 8192
    max_steps: int = 2000
    max_restarts: int = 16
    max_upscale: int = 8


@dataclasses.dataclass(frozen=True)
class Upload:
    """An upload that passed the checks: its file, name, format and ``(width, height)``."""

    path: pathlib.Path
    stem: str
    format: str
    size: tuple[int, int]


def safe_stem(name: str) -> str:
    """A file stem made of letters, digits, ``-`` and ``_`` from an uploaded file's name
    (never a path: the client chooses it). Stricter than :func:`pulse_jax.files.safe_stem`,
    which keeps any plain name, because this one is also shown in the page's Markdown and
    names the zip the browser downloads."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", pathlib.Path(str(name)).stem).strip("_")
    return (stem or "upload")[:60]


def read_upload(path: os.PathLike, limits: Limits = Limits(), name: str = "") -> Upload:
    """Checks the uploaded file at ``path`` and decodes it once (to find truncation).

    Args:
      path: the uploaded file (in Gradio's upload folder).
      limits: the :class:`Limits`.
      name: the name the client gave it (default: ``path``'s), for messages and outputs.

    Returns:
      the :class:`Upload`.

    Raises:
      UploadError: empty, too large, not a PNG/JPEG/WebP image, over the pixel limit
        (a decompression bomb), truncated or corrupt.
    """
    path = pathlib.Path(path)
    shown = pathlib.Path(name or path.name).name
    try:
        n_bytes = path.stat().st_size
    except OSError as e:
        raise UploadError(f"{shown}: cannot read the upload ({e.strerror or e})") from None
    if n_bytes == 0:
        raise UploadError(f"{shown}: the file is empty")
    if n_bytes > limits.max_bytes:
        raise UploadError(f"{shown}: {n_bytes / 2**20:.1f} MB, over the upload limit of "
                          f"{limits.max_bytes / 2**20:.0f} MB")
    with warnings.catch_warnings():
        # Pillow's own bomb check warns first and raises at twice its limit; ours is lower.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                fmt, size = im.format, im.size
                _check_header(shown, fmt, size, limits)
                im.load()
        except UploadError:
            raise
        except (UnidentifiedImageError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as e:
            if isinstance(e, UnidentifiedImageError):
                raise UploadError(f"{shown}: not an image (PNG, JPEG or WebP expected)") from None
            raise UploadError(f"{shown}: over the limit of {limits.max_pixels / 1e6:.1f} million "
                              f"pixels, refused before decoding ({e})") from None
        except (OSError, SyntaxError, ValueError) as e:
            raise UploadError(f"{shown}: truncated or corrupt image ({e})") from None
    return Upload(path, safe_stem(shown), fmt, size)


def _check_header(shown: str, fmt: str, size: tuple[int, int], limits: Limits) -> None:
    if fmt not in FORMATS:
        raise UploadError(f"{shown}: a {fmt} image; the app reads {', '.join(FORMATS)}")
    w, h = size
    if w < 1 or h < 1:
        raise UploadError(f"{shown}: an image of {w}x{h} pixels")
    if w * h > limits.max_pixels:
        raise UploadError(f"{shown}: {w}x{h} = {w * h / 1e6:.1f} million pixels, over the "
                          f"limit of {limits.max_pixels / 1e6:.1f} million (refused before "
                          "decoding)")
