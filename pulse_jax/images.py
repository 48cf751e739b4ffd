"""Reading, checking and writing images for PULSE: LR inputs in, HR faces and manifests out.

This module is the only place where pulse-jax touches image files. Everything else works on
float32 arrays in ``[0, 1]``, channels last (``[S, S, 3]`` per face, ``[B, S, S, 3]`` batched).

Finding inputs and checking sizes live in :mod:`pulse_jax.inputs`; ``discover_inputs``,
``check_size``, ``valid_lr_sizes``, ``ImageError`` and ``IMAGE_SUFFIXES`` are importable from
here too.

Loading and validating one face
-------------------------------
``load_image(path)`` returns ``(x, notes)``: ``x`` is float32 ``[S, S, 3]`` in ``[0, 1]`` and
``notes`` lists the conversions made, for the log. Any problem raises ``ImageError`` (a
``ValueError``) whose message names the file and the problem, so a batch can record it and go on
with the other faces. The rules:

* 8-bit samples become ``u8 / 255`` in float32, exactly what the reference's ``ToTensor`` does.
* Grayscale (``L``, ``1``) is replicated to RGB; palette (``P``) images go through their palette;
  CMYK (and YCbCr) JPEGs are converted to RGB by Pillow. Each conversion adds a note.
* An alpha channel (``RGBA``, ``LA``, ``PA``, or a PNG ``tRNS`` colour key) that is fully opaque is
  dropped with a note. Any transparent pixel is refused: a transparent background has no clear
  meaning for a face, so the user should flatten it onto the background they want.
* 16-bit PNGs (gray, gray+alpha, RGB, RGBA; interlaced or not) are decoded at full precision by a
  small decoder here (Pillow reduces 16-bit RGB to 8 bits) and scaled by ``1 / 65535``. Its
  row filters run in Python: about 0.6 s for a 512 x 512 16-bit RGBA file at worst.
* An EXIF orientation other than "normal" is applied (with a note), as an image viewer would.
* Corrupt files, truncated files (including a PNG whose final ``IEND`` chunk is missing, and any
  chunk whose CRC is wrong) and files that are not images at all are refused. Pillow's
  ``ImageFile.LOAD_TRUNCATED_IMAGES`` is forced off while decoding, so a truncated image is never
  silently padded with gray.
* The image must be square. ``check_size(S, resolution)`` (or ``load_image(path, resolution=...)``)
  also checks that ``S`` divides the generator's resolution, which PULSE's bicubic downscale needs,
  and its message lists the sizes that would work.

Writing results
---------------
``to_uint8`` converts floats to bytes by truncation, ``floor(255 * clip(x, 0, 1))``, like the
reference's ``ToPILImage`` (docs/reference.md, "Images in and out"); ``rounding="round"`` is
available. ``save_png`` writes an 8-bit RGB PNG atomically (:mod:`pulse_jax.files`).

Example::

    from pulse_jax import images
    paths = images.discover_inputs("input/")
    for p in paths:
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
import io
import pathlib
import struct
import threading
import zlib
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

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


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))
_TRUNCATION_LOCK = threading.Lock()


def _png_chunks(path: pathlib.Path, data: bytes) -> list[tuple[bytes, bytes]]:
    """Walks a PNG's chunks, checking lengths and CRCs, up to and including IEND."""
    chunks = []
    pos = len(_PNG_SIGNATURE)
    n = len(data)
    while True:
        if pos + 8 > n:
            raise ImageError(path, f"PNG file is truncated: it ends after {n} bytes, inside a "
                                   "chunk header, before the final IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos:pos + 8])
        if length > 0x7FFFFFFF or not ctype.isalpha():
            raise ImageError(path, f"PNG file is corrupt: invalid chunk header at byte {pos}")
        end = pos + 12 + length
        if end > n:
            raise ImageError(path, f"PNG file is truncated: it ends after {n} bytes, inside the "
                                   f"{ctype.decode('ascii')} chunk that needs {end} bytes")
        body = data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:end])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise ImageError(path, f"PNG file is corrupt: CRC mismatch in the "
                                   f"{ctype.decode('ascii')} chunk at byte {pos}")
        chunks.append((ctype, body))
        pos = end
        if ctype == b"IEND":
            return chunks


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(path, buf: bytes, off: int, rows: int, rowbytes: int, bpp: int) -> np.ndarray:
    """Undoes PNG's per-row filters; returns uint8 [rows, rowbytes]."""
    out = np.empty((rows, rowbytes), np.uint8)
    prev = np.zeros(rowbytes, np.uint8)
    for y in range(rows):
        ftype = buf[off]
        line = np.frombuffer(buf, np.uint8, rowbytes, off + 1)
        off += rowbytes + 1
        if ftype == 0:
            cur = line
        elif ftype == 1:
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif ftype == 2:
            cur = line + prev
        elif ftype in (3, 4):
            cur_b = bytearray(line.tobytes())
            up = prev.tobytes()
            for i in range(rowbytes):
                a = cur_b[i - bpp] if i >= bpp else 0
                if ftype == 3:
                    pred = (a + up[i]) >> 1
                else:
                    pred = _paeth(a, up[i], up[i - bpp] if i >= bpp else 0)
                cur_b[i] = (cur_b[i] + pred) & 0xFF
            cur = np.frombuffer(bytes(cur_b), np.uint8)
        else:
            raise ImageError(path, f"PNG file is corrupt: unknown row filter type {ftype}")
        out[y] = cur
        prev = out[y]
    return out


def _decode_png16(path, chunks) -> tuple[np.ndarray, np.ndarray | None]:
    """Decodes a 16-bit PNG: returns (uint16 [H, W, 1 or 3], uint16 alpha [H, W] or None)."""
    ihdr = chunks[0][1]
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", ihdr)
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
    if channels is None or depth != 16 or interlace not in (0, 1):
        raise ImageError(path, f"PNG file is corrupt: colour type {ctype} with bit depth {depth}")
    dec = zlib.decompressobj()
    try:
        raw = dec.decompress(b"".join(body for t, body in chunks if t == b"IDAT"))
    except zlib.error as e:
        raise ImageError(path, f"PNG file is corrupt: invalid compressed pixel data ({e})") from e
    if not dec.eof:
        raise ImageError(path, "PNG file is truncated: its compressed pixel data ends early")
    bpp = 2 * channels
    img = np.empty((h, w, channels), np.uint16)
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    off = 0
    for x0, y0, dx, dy in passes:
        pw, ph = -(-(w - x0) // dx), -(-(h - y0) // dy)
        if pw <= 0 or ph <= 0:
            continue
        rowbytes = pw * bpp
        if off + ph * (rowbytes + 1) > len(raw):
            raise ImageError(path, "PNG file is corrupt: too little pixel data for its size")
        rows = _unfilter(path, raw, off, ph, rowbytes, bpp)
        off += ph * (rowbytes + 1)
        img[y0::dy, x0::dx] = rows.view(">u2").reshape(ph, pw, channels)
    if off != len(raw):
        raise ImageError(path, "PNG file is corrupt: more pixel data than its size needs")
    alpha = None
    if ctype in (4, 6):
        img, alpha = img[..., :-1], img[..., -1]
    else:
        trns = [body for t, body in chunks if t == b"tRNS"]
        if trns:
            key = np.frombuffer(trns[0], ">u2")
            if key.size != channels:
                raise ImageError(path, "PNG file is corrupt: tRNS chunk of the wrong length")
            alpha = np.where(np.all(img == key, axis=-1), 0, 65535).astype(np.uint16)
    return img, alpha


def _orient(x: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation (1..8) to an [H, W, ...] array, as ImageOps.exif_transpose."""
    t = lambda a: np.swapaxes(a, 0, 1)  # noqa: E731
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: t,
        6: lambda a: np.rot90(a, -1),
        7: lambda a: t(a)[::-1, ::-1],
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(ops[orientation](x)) if orientation in ops else x


@contextlib.contextmanager
def _no_truncated_loads():
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


def _split_alpha(path, color: np.ndarray, alpha: np.ndarray | None, opaque: int, mode: str,
                 notes: list[str]) -> np.ndarray:
    if alpha is None:
        return color
    n_transparent = int(np.count_nonzero(alpha != opaque))
    if n_transparent:
        raise ImageError(
            path,
            f"image has transparency ({mode}; {n_transparent} of {alpha.size} pixels are not "
            "fully opaque): a transparent background has no clear meaning for a face; flatten "
            "it onto the background you want and save it as RGB",
        )
    notes.append(f"alpha channel ({mode}) is fully opaque: dropped")
    return color


def _decode(path: pathlib.Path, data: bytes) -> tuple[np.ndarray, list[str]]:
    """Returns (float32 [H, W, 3] in [0, 1], notes) for any image Pillow can open."""
    notes: list[str] = []
    is_png = data.startswith(_PNG_SIGNATURE)
    chunks = _png_chunks(path, data) if is_png else None
    try:
        with _no_truncated_loads():
            im = Image.open(io.BytesIO(data))
            im.load()
    except UnidentifiedImageError as e:
        raise ImageError(path, "not a readable image: Pillow cannot identify it "
                               "(corrupt, or not a PNG/JPEG file)") from e
    except Image.DecompressionBombError as e:
        raise ImageError(path, f"image is too large to decode safely ({e})") from e
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error) as e:
        if "truncated" in str(e).lower():
            raise ImageError(path, f"{_fmt(data)} file is truncated (Pillow: {e})") from e
        raise ImageError(path, f"{_fmt(data)} file is corrupt ({type(e).__name__}: {e})") from e
    orientation = 1
    with contextlib.suppress(Exception):
        orientation = int(im.getexif().get(0x0112, 1))

    if is_png and chunks and chunks[0][0] == b"IHDR" and len(chunks[0][1]) == 13 and \
            chunks[0][1][8] == 16:
        color, alpha = _decode_png16(path, chunks)
        kind = {1: "gray", 3: "RGB"}[color.shape[-1]] + ("+alpha" if alpha is not None else "")
        color = _split_alpha(path, color, alpha, 65535, f"16-bit {kind}", notes)
        if color.shape[-1] == 1:
            color = np.repeat(color, 3, axis=-1)
            notes.append("grayscale (16-bit) replicated to RGB")
        notes.append("16-bit PNG: samples divided by 65535 (precision beyond 8 bits is kept)")
        x = color.astype(np.float32) / np.float32(65535)
    else:
        x = _pillow_to_float(path, im, notes)
    if orientation != 1 and 1 < orientation <= 8:
        x = _orient(x, orientation)
        notes.append(f"EXIF orientation {orientation} applied (image rotated/flipped upright)")
    return x, notes


def _fmt(data: bytes) -> str:
    if data.startswith(_PNG_SIGNATURE):
        return "PNG"
    if data.startswith(b"\xff\xd8"):
        return "JPEG"
    return "image"


def _pillow_to_float(path, im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    has_key = "transparency" in im.info
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        u = np.asarray(im).astype(np.uint16)
        notes.append("grayscale (16-bit) replicated to RGB")
        notes.append("16-bit image: samples divided by 65535 (precision beyond 8 bits is kept)")
        return np.repeat(u[..., None], 3, axis=-1).astype(np.float32) / np.float32(65535)
    if mode in ("P", "PA"):
        notes.append(f"palette image ({mode}) converted to RGB through its palette")
        if mode == "PA" or has_key:
            rgba = np.asarray(im.convert("RGBA"))
            u = _split_alpha(path, rgba[..., :3], rgba[..., 3], 255, f"palette {mode} "
                             + ("alpha" if mode == "PA" else "transparency"), notes)
        else:
            u = np.asarray(im.convert("RGB"))
    elif mode in ("L", "1"):
        notes.append(f"grayscale ({mode}) replicated to RGB")
        if has_key:
            la = np.asarray(im.convert("LA"))
            g = _split_alpha(path, la[..., :1], la[..., 1], 255, f"{mode} transparency key",
                             notes)
        else:
            g = np.asarray(im.convert("L"))[..., None]
        u = np.repeat(g, 3, axis=-1)
    elif mode == "LA":
        la = np.asarray(im)
        g = _split_alpha(path, la[..., :1], la[..., 1], 255, "LA", notes)
        notes.append("grayscale (LA) replicated to RGB")
        u = np.repeat(g, 3, axis=-1)
    elif mode == "RGBA":
        rgba = np.asarray(im)
        u = _split_alpha(path, rgba[..., :3], rgba[..., 3], 255, "RGBA", notes)
    elif mode == "RGB":
        if has_key:
            rgba = np.asarray(im.convert("RGBA"))
            u = _split_alpha(path, rgba[..., :3], rgba[..., 3], 255, "RGB transparency key",
                             notes)
        else:
            u = np.asarray(im)
    elif mode in ("CMYK", "YCbCr"):
        notes.append(f"{mode} image converted to RGB by Pillow (no colour management)")
        u = np.asarray(im.convert("RGB"))
    else:
        raise ImageError(path, f"unsupported pixel format {mode!r}; use 8-bit or 16-bit "
                               "RGB or grayscale PNG, or JPEG")
    return u.astype(np.float32) / np.float32(255)


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
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(u), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: PathLike, x: Any, rounding: Rounding = "truncate") -> pathlib.Path:
    """Writes float ``[H, W, 3]`` in ``[0, 1]`` (or uint8) as an 8-bit RGB PNG, atomically.

    Values are clipped to ``[0, 1]`` and converted by ``to_uint8(x, rounding)`` (truncation by
    default, as the reference). Missing parent folders are created. Returns the path.
    """
    return files.atomic_write_bytes(path, encode_png(x, rounding))
