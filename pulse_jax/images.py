"""Reading LR faces and writing HR faces: the only place where pulse-jax touches image files.

Everything else works on float32 arrays in ``[0, 1]``, channels last (``[S, S, 3]`` per face,
``[B, S, S, 3]`` batched). Finding the inputs and checking their size live in
:mod:`pulse_jax.inputs`; their names (``discover_inputs``, ``check_size``, ``valid_lr_sizes``,
``ImageError``, ``IMAGE_SUFFIXES``) are importable from here too.

Reading one face
----------------
``load_image(path)`` returns ``(x, notes)``: ``x`` is float32 ``[S, S, 3]`` in ``[0, 1]`` and
``notes`` lists the conversions made, for the log. Any problem raises ``ImageError`` naming the
file and the problem. Files are read through imageio's Pillow plugin, except where said below.

* 8-bit samples become ``u8 / 255`` in float32, exactly what the reference's ``ToTensor`` does.
* Grayscale (``L``, ``1``) is replicated to RGB; palette (``P``) images go through their palette;
  CMYK (and YCbCr) JPEGs are converted to RGB by Pillow. Each conversion adds a note.
* An alpha channel (``RGBA``, ``LA``, ``PA``, or a PNG ``tRNS`` colour key) that is fully opaque is
  dropped with a note. Any transparent pixel is refused: a transparent background has no clear
  meaning for a face, so the user should flatten it onto the background they want.
* 16-bit PNGs (gray, gray+alpha, RGB, RGBA; interlaced or not) are scaled by ``1 / 65535`` at
  full precision. Pillow keeps only the high byte of 16-bit colour, so these are read by pypng;
  its raw samples are used (``asDirect`` would also shift them by an ``sBIT`` chunk) and a
  ``tRNS`` colour key becomes alpha here.
* An EXIF orientation other than "normal" is applied (with a note) by Pillow's
  ``ImageOps.exif_transpose``, one plane at a time: Pillow has no 16-bit colour mode, and
  imageio's own ``rotate`` flips the channel axis of a palette image it has expanded to RGB.
* Corrupt files, truncated files and files that are not images at all are refused. Every PNG's
  chunks are walked by pypng first, because Pillow decodes a PNG whose final ``IEND`` chunk is
  missing and does not check the pixel data's CRCs. Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES``
  is forced off while decoding, so a truncated JPEG is never silently padded with gray.
* The image must be square; ``load_image(path, resolution=...)`` also applies ``check_size``.

Writing results
---------------
``to_uint8`` converts floats to bytes by truncation, ``floor(255 * clip(x, 0, 1))``, like the
reference's ``ToPILImage`` (docs/reference.md, "Images in and out"); ``rounding="round"`` is
available. ``encode_png`` makes 8-bit RGB PNG bytes with imageio's Pillow plugin (Pillow's
default compression, so the bytes are those Pillow itself writes) and ``save_png`` writes them
atomically (:mod:`pulse_jax.files`).

Example::

    from pulse_jax import images
    for p in images.discover_inputs("input/"):
        try:
            lr, notes = images.load_image(p, resolution=1024)
        except images.ImageError as err:
            print("skipped:", err)
            continue
        ...
        images.save_png(f"runs/{p.stem}.png", hr)
"""

from __future__ import annotations

import contextlib
import pathlib
import re
import struct
import threading
import zlib
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

import imageio.v3 as iio
import numpy as np
import png
from imageio.core.request import InitializationError
from PIL import ExifTags, Image, ImageFile, ImageOps

from pulse_jax import files
from pulse_jax.inputs import (IMAGE_SUFFIXES, ImageError, PathLike, check_size, discover_inputs,
                              valid_lr_sizes)

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageError",
    "check_size",
    "discover_inputs",
    "encode_png",
    "load_image",
    "save_png",
    "to_uint8",
    "valid_lr_sizes",
]

Rounding = Literal["truncate", "round"]

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TRUNCATION_LOCK = threading.Lock()
# What Pillow and zlib raise on a file they cannot decode.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error)


class _Samples(NamedTuple):
    """Decoded samples before they become floats."""

    u: np.ndarray       # uint8 or uint16 [H, W, C]; C is 1 (gray) or 3, plus alpha if any
    alpha: str | None   # how messages name the alpha channel (last in u); None if there is none
    gray: str           # how the note names a grayscale format
    full: int           # the opaque, full-scale sample value: 255 or 65535


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _no_truncated_loads() -> Iterator[None]:
    """Keeps Pillow's LOAD_TRUNCATED_IMAGES off while decoding, even if someone turned it on."""
    if not ImageFile.LOAD_TRUNCATED_IMAGES:
        yield
        return
    with _TRUNCATION_LOCK:
        old, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = old


def _format(data: bytes) -> str:
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    return "JPEG" if data.startswith(b"\xff\xd8") else "image"


def _decode_error(path: pathlib.Path, data: bytes, e: BaseException) -> ImageError:
    if "truncated" in str(e).lower():
        return ImageError(path, f"{_format(data)} file is truncated (Pillow: {e})")
    return ImageError(path, f"{_format(data)} file is corrupt ({type(e).__name__}: {e})")


def _png_error(path: pathlib.Path, e: Exception) -> ImageError:
    # pypng says which check failed only in its message.
    msg = str(e)
    crc = re.search(r"Checksum error in (\w+) chunk", msg)
    if crc:
        return ImageError(path, f"PNG file is corrupt: CRC mismatch in the {crc[1]} chunk "
                                f"(pypng: {msg})")
    if any(s in msg for s in ("too short", "No more chunks", "End of file")):
        return ImageError(path, f"PNG file is truncated: it ends before its final IEND chunk "
                                f"(pypng: {msg})")
    return ImageError(path, f"PNG file is corrupt (pypng: {msg})")


def _png_depth(path: pathlib.Path, data: bytes) -> int:
    """Checks every chunk of a PNG (lengths, CRCs, the final IEND); returns its bit depth."""
    try:
        for _ in png.Reader(bytes=data).chunks():
            pass
        header = png.Reader(bytes=data)
        header.preamble()
    except png.Error as e:
        raise _png_error(path, e) from e
    return header.bitdepth


def _png16_samples(path: pathlib.Path, data: bytes, notes: list[str]) -> _Samples:
    """A 16-bit PNG's samples at full precision, a tRNS colour key turned into alpha."""
    try:
        width, height, rows, info = png.Reader(bytes=data).read()
        u = np.array(list(rows), np.uint16).reshape(height, width, info["planes"])
    except (png.Error, zlib.error, ValueError) as e:
        raise _png_error(path, e) from e
    key = info.get("transparent")
    if key is not None:
        keyed = np.all(u == np.asarray(key, np.uint16), axis=-1, keepdims=True)
        u = np.concatenate([u, np.where(keyed, 0, 65535).astype(np.uint16)], axis=-1)
    has_alpha = info["alpha"] or key is not None
    kind = ("gray" if info["greyscale"] else "RGB") + ("+alpha" if has_alpha else "")
    notes.append("16-bit PNG: samples divided by 65535 (precision beyond 8 bits is kept)")
    return _Samples(u, f"16-bit {kind}" if has_alpha else None, "16-bit", 65535)


def _open(path: pathlib.Path, data: bytes) -> Any:
    """An imageio Pillow reader of ``data``; nothing is decoded yet."""
    try:
        return iio.imopen(data, "r", plugin="pillow")
    except OSError as e:  # imageio wraps whatever Pillow raised
        cause = e.__cause__
        if isinstance(cause, Image.DecompressionBombError):
            raise ImageError(path, f"image is too large to decode safely ({cause})") from e
        if isinstance(cause, InitializationError):
            raise ImageError(path, "not a readable image: Pillow cannot identify it "
                                   "(corrupt, or not a PNG/JPEG file)") from e
        raise _decode_error(path, data, cause or e) from e


def _read_mode(path: pathlib.Path, mode: str, keyed: bool, notes: list[str]
               ) -> tuple[str | None, str | None, str]:
    """For a Pillow mode: (mode to read as, the alpha's name or None, the grayscale name)."""
    if mode in ("P", "PA"):
        notes.append(f"palette image ({mode}) converted to RGB through its palette")
        if mode == "PA" or keyed:
            return "RGBA", f"palette {mode} " + ("alpha" if mode == "PA" else "transparency"), ""
        return "RGB", None, ""
    if mode in ("L", "1"):
        return ("LA", f"{mode} transparency key", mode) if keyed else ("L", None, mode)
    if mode in ("LA", "RGBA"):
        return mode, mode, mode
    if mode == "RGB":
        return ("RGBA", "RGB transparency key", "") if keyed else ("RGB", None, "")
    if mode in ("CMYK", "YCbCr"):
        notes.append(f"{mode} image converted to RGB by Pillow (no colour management)")
        return "RGB", None, ""
    if mode.startswith("I;16"):
        notes.append("16-bit image: samples divided by 65535 (precision beyond 8 bits is kept)")
        return None, None, "16-bit"
    raise ImageError(path, f"unsupported pixel format {mode!r}; use 8-bit or 16-bit "
                           "RGB or grayscale PNG, or JPEG")


def _pillow_samples(path: pathlib.Path, data: bytes, reader: Any, meta: dict,
                    notes: list[str]) -> _Samples:
    as_mode, alpha, gray = _read_mode(path, meta["mode"], "transparency" in meta, notes)
    try:
        u = reader.read(mode=as_mode)
    except _DECODE_ERRORS as e:
        raise _decode_error(path, data, e) from e
    u = u if u.ndim == 3 else u[..., None]
    return _Samples(u, alpha, gray, 65535 if u.dtype.itemsize == 2 else 255)


def _to_float(path: pathlib.Path, s: _Samples, notes: list[str]) -> np.ndarray:
    """float32 RGB from samples: a fully opaque alpha dropped, grayscale replicated."""
    u = s.u
    if s.alpha is not None:
        u, alpha = u[..., :-1], u[..., -1]
        n_transparent = int(np.count_nonzero(alpha != s.full))
        if n_transparent:
            raise ImageError(
                path,
                f"image has transparency ({s.alpha}; {n_transparent} of {alpha.size} pixels are "
                "not fully opaque): a transparent background has no clear meaning for a face; "
                "flatten it onto the background you want and save it as RGB",
            )
        notes.append(f"alpha channel ({s.alpha}) is fully opaque: dropped")
    if u.shape[-1] == 1:
        u = np.repeat(u, 3, axis=-1)
        notes.append(f"grayscale ({s.gray}) replicated to RGB")
    return u.astype(np.float32) / np.float32(s.full)


def _upright(x: np.ndarray, orientation: int) -> np.ndarray:
    """``x`` [H, W, C] turned by Pillow's exif_transpose for this EXIF orientation."""
    planes = []
    for c in range(x.shape[-1]):
        plane = Image.fromarray(np.ascontiguousarray(x[..., c]))
        plane.getexif()[ExifTags.Base.Orientation] = orientation
        planes.append(np.asarray(ImageOps.exif_transpose(plane)))
    return np.stack(planes, axis=-1)


def _decode(path: pathlib.Path, data: bytes) -> tuple[np.ndarray, list[str]]:
    """Returns (float32 [H, W, 3] in [0, 1], notes) for any image Pillow can open."""
    notes: list[str] = []
    depth = _png_depth(path, data) if data.startswith(_PNG_SIGNATURE) else 8
    with _no_truncated_loads(), _open(path, data) as reader:
        try:
            meta = reader.metadata(exclude_applied=False)
        except _DECODE_ERRORS as e:
            raise _decode_error(path, data, e) from e
        if depth == 16:
            samples = _png16_samples(path, data, notes)
        else:
            samples = _pillow_samples(path, data, reader, meta, notes)
    x = _to_float(path, samples, notes)
    orientation = meta.get("Orientation", 1)
    if orientation in range(2, 9):
        x = _upright(x, orientation)
        notes.append(f"EXIF orientation {orientation} applied (image rotated/flipped upright)")
    return x, notes


def load_image(path: PathLike, resolution: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Loads one LR face as float32 ``[S, S, 3]`` in ``[0, 1]``, with notes on conversions.

    Args:
      path: a PNG or JPEG file (other formats Pillow reads are accepted under the same rules).
      resolution: if given, the generator's resolution; the size is then checked with
        ``check_size`` (the error names this file).

    Returns:
      ``(x, notes)``. ``x``: float32 ``[S, S, 3]``; 8-bit samples are ``u8 / 255`` computed in
      float32 (bit-identical to torchvision's ``ToTensor``), 16-bit PNG samples ``u16 / 65535``.
      ``notes``: human sentences about what was converted (grayscale or palette to RGB, opaque
      alpha dropped, 16-bit kept, CMYK converted, EXIF orientation applied); empty for a plain
      8-bit RGB file.

    Raises:
      ImageError: file missing or unreadable; empty; not an image; corrupt; truncated; pixel
        format not supported; transparent pixels; not square; (with ``resolution``) a size
        that does not divide it.
    """
    path = pathlib.Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise ImageError(path, "file not found") from e
    except IsADirectoryError as e:
        raise ImageError(path, "is a folder, not an image file") from e
    except OSError as e:
        raise ImageError(path, f"cannot read file ({e.strerror or e})") from e
    if not data:
        raise ImageError(path, "file is empty (0 bytes)")
    x, notes = _decode(path, data)
    h, w = x.shape[:2]
    if h != w:
        raise ImageError(path, f"image is not square: {w}x{h} (width x height); PULSE needs a "
                               "square S x S face (crop or align it first)")
    if resolution is not None:
        try:
            check_size(w, resolution)
        except ImageError as e:
            raise ImageError(path, e.message) from None
    return x, notes


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------


def to_uint8(x: Any, rounding: Rounding = "truncate") -> np.ndarray:
    """Converts floats in ``[0, 1]`` to uint8, like the reference by default.

    ``"truncate"`` (default): ``floor(255 * clip(x, 0, 1))`` computed in float32. This is what
    torchvision's ``ToPILImage`` does in the reference (docs/reference.md, "Images in and
    out"): its saved HR images and, more importantly, its LR references (``align_face.py``
    output) were made this way, so keeping it reproduces the reference's files bit for bit, and
    ``u8 / 255`` round-trips exactly (``to_uint8(u / 255) == u`` for every byte). It darkens by
    0.5/255 on average.
    ``"round"``: ``rint(255 * clip(x, 0, 1))``, unbiased; choose it for images that only people
    look at. NaN becomes 0 in both modes.

    Args:
      x: array-like (numpy or JAX) of any shape, floats nominally in ``[0, 1]``. A uint8 array
        is returned unchanged.
      rounding: ``"truncate"`` or ``"round"``.

    Returns:
      uint8 array of the same shape.
    """
    if rounding not in ("truncate", "round"):
        raise ValueError(f"rounding must be 'truncate' or 'round', got {rounding!r}")
    a = np.asarray(x)
    if a.dtype == np.uint8:
        return a
    a = np.nan_to_num(np.clip(a.astype(np.float32), 0.0, 1.0), nan=0.0) * np.float32(255)
    a = np.floor(a) if rounding == "truncate" else np.rint(a)
    return a.astype(np.uint8)


def encode_png(x: Any, rounding: Rounding = "truncate") -> bytes:
    """PNG bytes of an 8-bit RGB image from float ``[H, W, 3]`` in ``[0, 1]`` (or uint8)."""
    u = to_uint8(x, rounding)
    if u.ndim != 3 or u.shape[-1] != 3:
        raise ValueError(f"expected an image of shape [H, W, 3], got {u.shape}")
    return iio.imwrite("<bytes>", np.ascontiguousarray(u), extension=".png", plugin="pillow")


def save_png(path: PathLike, x: Any, rounding: Rounding = "truncate") -> pathlib.Path:
    """Writes float ``[H, W, 3]`` in ``[0, 1]`` (or uint8) as an 8-bit RGB PNG, atomically.

    Values are clipped to ``[0, 1]`` and converted by ``to_uint8(x, rounding)`` (truncation by
    default, as the reference). Missing parent folders are created. Returns the path.
    """
    return files.atomic_write_bytes(path, encode_png(x, rounding))
