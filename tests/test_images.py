"""Tests for pulse_jax.images: input discovery, decoding and validation, atomic outputs."""

import io
import os
import pathlib
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps

from pulse_jax import images
from pulse_jax.images import ImageError

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------------------------
# helpers: writing test files
# ---------------------------------------------------------------------------------------------


def _rgb(h=32, w=None, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w or h, 3), dtype=np.uint8)


def _save(path, arr_or_im, **kw):
    im = arr_or_im if isinstance(arr_or_im, Image.Image) else Image.fromarray(arr_or_im)
    im.save(path, **kw)
    return pathlib.Path(path)


def _chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(
        ">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


# Adam7's passes as (x0, y0, dx, dy), in the PNG specification's order.
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
          (0, 1, 1, 2))


def _filter_rows(rows: np.ndarray, bpp: int, first_filter: int) -> bytes:
    """PNG-filters uint8 rows [n, rowbytes], cycling through filter types 0..4."""
    out = []
    prev = np.zeros(rows.shape[1], np.int32)
    for y, row in enumerate(rows.astype(np.int32)):
        ft = (first_filter + y) % 5
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        pred = [0, left, prev, (left + prev) // 2, _paeth(left, prev, upleft)][ft]
        out.append(bytes([ft]) + ((row - pred) % 256).astype(np.uint8).tobytes())
        prev = row
    return b"".join(out)


def _png16(arr: np.ndarray, interlace=False, trns=None) -> bytes:
    """A 16-bit PNG of uint16 [H, W, C] (C = 1, 2, 3, 4) using every row filter type."""
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    bpp = 2 * c
    passes = _ADAM7 if interlace else ((0, 0, 1, 1),)
    raw = b""
    for k, (x0, y0, dx, dy) in enumerate(passes):
        sub = arr[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        rows = sub.astype(">u2").view(np.uint8).reshape(sub.shape[0], -1)
        raw += _filter_rows(rows, bpp, k)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(
        b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, int(interlace)))
    if trns is not None:
        png += _chunk(b"tRNS", np.asarray(trns, ">u2").tobytes())
    return png + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _u16(shape, seed=1):
    return np.random.default_rng(seed).integers(0, 65536, shape, dtype=np.uint16)


def _exact8(u):
    return u.astype(np.float32) / np.float32(255)


# ---------------------------------------------------------------------------------------------
# discover_inputs
# ---------------------------------------------------------------------------------------------


def test_discover_folder_sorted_nonrecursive(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.JpEg", "d.txt", ".hidden.png", "e.gif"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.png").write_bytes(b"x")
    (tmp_path / "dir.png").mkdir()  # a folder with an image-like name is not a file
    got = images.discover_inputs(tmp_path)
    assert [p.name for p in got] == ["a.jpg", "b.PNG", "c.JpEg"]
    assert images.discover_inputs(str(tmp_path)) == got


def test_discover_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ImageError) as e:
        images.discover_inputs(tmp_path)
    assert e.value.path == tmp_path
    assert "no PNG or JPEG" in str(e.value) and str(tmp_path) in str(e.value)


def test_discover_glob(tmp_path):
    for name in ["x_0.png", "x_1.png", "y_0.png", "x_2.txt"]:
        (tmp_path / name).write_bytes(b"x")
    got = images.discover_inputs(str(tmp_path / "x_*"))
    assert [p.name for p in got] == ["x_0.png", "x_1.png"]
    with pytest.raises(ImageError, match=r"glob pattern .*z_\*.* matched no PNG or JPEG"):
        images.discover_inputs(str(tmp_path / "z_*"))


def test_discover_list_file(tmp_path):
    (tmp_path / "faces").mkdir()
    other = tmp_path / "elsewhere.png"
    other.write_bytes(b"x")
    lst = tmp_path / "faces" / "list.txt"
    lst.write_text("# my faces\n\nb.png\n  a.png  \n# skipped.png\nsub/c.jpg\n"
                   f"{other}\nmissing.png\n")
    want = [tmp_path / "faces" / "b.png", tmp_path / "faces" / "a.png",
            tmp_path / "faces" / "sub" / "c.jpg", other, tmp_path / "faces" / "missing.png"]
    assert images.discover_inputs(str(lst)) == want  # order kept, missing files kept
    assert images.discover_inputs("@" + str(lst)) == want
    # A missing listed file is reported per file by load_image, not by discovery.
    with pytest.raises(ImageError, match="file not found"):
        images.load_image(want[-1])


def test_discover_list_file_errors(tmp_path):
    lst = tmp_path / "empty.txt"
    lst.write_text("# nothing\n\n   \n")
    with pytest.raises(ImageError, match="list file names no images"):
        images.discover_inputs(lst)
    with pytest.raises(ImageError, match="list file not found"):
        images.discover_inputs("@" + str(tmp_path / "nope.lst"))
    with pytest.raises(ImageError, match="list file not found"):
        images.discover_inputs(tmp_path / "nope.txt")


def test_discover_missing_and_sequences(tmp_path):
    with pytest.raises(ImageError, match="no such file, folder or list file"):
        images.discover_inputs(tmp_path / "nope")
    with pytest.raises(ImageError, match="no inputs given"):
        images.discover_inputs([])
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "b.png").write_bytes(b"x")
    got = images.discover_inputs([str(tmp_path / "d"), a, str(a), tmp_path / "d" / "b.png"])
    assert got == [tmp_path / "d" / "b.png", a]  # duplicates kept once


# ---------------------------------------------------------------------------------------------
# load_image: good files and conversions
# ---------------------------------------------------------------------------------------------


def test_load_rgb_png_exact(tmp_path):
    u = _rgb(32)
    x, notes = images.load_image(_save(tmp_path / "a.png", u))
    assert x.dtype == np.float32 and x.shape == (32, 32, 3)
    np.testing.assert_array_equal(x, _exact8(u))
    assert notes == []
    # every byte value maps to exactly u/255 in float32 and back
    allb = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, -1)
    x, _ = images.load_image(_save(tmp_path / "b.png", allb))
    np.testing.assert_array_equal(images.to_uint8(x), allb)


def test_load_rgb_jpeg(tmp_path):
    u = _rgb(16)
    p = _save(tmp_path / "a.jpg", u, quality=95)
    x, notes = images.load_image(p)
    np.testing.assert_array_equal(x, _exact8(np.asarray(Image.open(p))))
    assert notes == []


def test_load_grayscale(tmp_path):
    g = _rgb(16)[..., 0]
    x, notes = images.load_image(_save(tmp_path / "g.png", Image.fromarray(g, "L")))
    np.testing.assert_array_equal(x, _exact8(np.repeat(g[..., None], 3, -1)))
    assert any("grayscale (L) replicated to RGB" in n for n in notes)
    # bilevel "1"
    b = Image.fromarray(g > 128).convert("1")
    x, notes = images.load_image(_save(tmp_path / "b.png", b))
    np.testing.assert_array_equal(x[..., 0], (g > 128).astype(np.float32))
    assert any("grayscale (1)" in n for n in notes)


def test_load_palette(tmp_path):
    pal_colors = np.array([[10, 20, 30], [200, 100, 0], [0, 255, 7]], np.uint8)
    idx = np.random.default_rng(3).integers(0, 3, (8, 8)).astype(np.uint8)
    im = Image.fromarray(idx, "P")
    im.putpalette(pal_colors.reshape(-1).tolist())
    x, notes = images.load_image(_save(tmp_path / "p.png", im))
    np.testing.assert_array_equal(x, _exact8(pal_colors[idx]))
    assert any("palette image (P) converted to RGB" in n for n in notes)


def test_load_palette_transparency(tmp_path):
    idx = np.zeros((8, 8), np.uint8)
    idx[0, 0] = 1
    im = Image.fromarray(idx, "P")
    im.putpalette([1, 2, 3, 4, 5, 6, 7, 8, 9])
    with pytest.raises(ImageError, match=r"transparency .*1 of 64 pixels"):
        images.load_image(_save(tmp_path / "t.png", im, transparency=1))
    # a transparent palette entry that no pixel uses: fully opaque, dropped
    x, notes = images.load_image(_save(tmp_path / "o.png", im, transparency=2))
    np.testing.assert_array_equal(x[0, 0], _exact8(np.array([4, 5, 6])))
    assert any("fully opaque: dropped" in n for n in notes)


def test_load_rgba(tmp_path):
    u = _rgb(16)
    rgba = np.concatenate([u, np.full((16, 16, 1), 255, np.uint8)], -1)
    x, notes = images.load_image(_save(tmp_path / "o.png", rgba))
    np.testing.assert_array_equal(x, _exact8(u))
    assert notes == ["alpha channel (RGBA) is fully opaque: dropped"]
    rgba[3, 4, 3] = 254
    rgba[5, 5, 3] = 0
    with pytest.raises(ImageError) as e:
        images.load_image(_save(tmp_path / "t.png", rgba))
    assert "transparency" in str(e.value) and "2 of 256 pixels" in str(e.value)
    assert "t.png" in str(e.value) and "flatten" in str(e.value)


def test_load_la(tmp_path):
    g = _rgb(16)[..., 0]
    la = np.stack([g, np.full_like(g, 255)], -1)
    x, notes = images.load_image(_save(tmp_path / "o.png", Image.fromarray(la, "LA")))
    np.testing.assert_array_equal(x, _exact8(np.repeat(g[..., None], 3, -1)))
    assert "alpha channel (LA) is fully opaque: dropped" in notes
    assert "grayscale (LA) replicated to RGB" in notes
    la[0, 0, 1] = 10
    with pytest.raises(ImageError, match=r"transparency \(LA; 1 of 256"):
        images.load_image(_save(tmp_path / "t.png", Image.fromarray(la, "LA")))


def test_load_rgb_colour_key(tmp_path):
    u = _rgb(8)
    u[0, 0] = (1, 2, 3)
    with pytest.raises(ImageError, match="RGB transparency key"):
        images.load_image(_save(tmp_path / "k.png", u, transparency=(1, 2, 3)))


def test_load_16bit_gray_pillow_written(tmp_path):
    g = _u16((16, 16))
    p = _save(tmp_path / "g16.png", Image.fromarray(g))  # Pillow writes a 16-bit gray PNG
    assert Image.open(p).mode.startswith("I")
    x, notes = images.load_image(p)
    np.testing.assert_array_equal(x, np.repeat(g[..., None], 3, -1).astype(np.float32)
                                  / np.float32(65535))
    assert any("16-bit" in n and "precision beyond 8 bits is kept" in n for n in notes)
    assert "grayscale (16-bit) replicated to RGB" in notes


@pytest.mark.parametrize("interlace", [False, True])
def test_load_16bit_rgb(tmp_path, interlace):
    u = _u16((19, 19, 3))  # odd size: Adam7 passes of different widths
    u[0, 0] = (0, 65535, 257)
    p = tmp_path / "rgb16.png"
    p.write_bytes(_png16(u, interlace=interlace))
    x, notes = images.load_image(p)
    np.testing.assert_array_equal(x, u.astype(np.float32) / np.float32(65535))
    assert x[0, 0, 0] == 0.0 and x[0, 0, 1] == 1.0
    assert notes == ["16-bit PNG: samples divided by 65535 (precision beyond 8 bits is kept)"]
    # Pillow reads the same file as 8 bits (the high bytes): our decoder agrees with it
    np.testing.assert_array_equal(np.asarray(Image.open(p).convert("RGB")), u >> 8)


def test_load_16bit_alpha_and_gray_alpha(tmp_path):
    u = _u16((8, 8, 3))
    a = np.full((8, 8, 1), 65535, np.uint16)
    p = tmp_path / "rgba16.png"
    p.write_bytes(_png16(np.concatenate([u, a], -1)))
    x, notes = images.load_image(p)
    np.testing.assert_array_equal(x, u.astype(np.float32) / np.float32(65535))
    assert "alpha channel (16-bit RGB+alpha) is fully opaque: dropped" in notes
    a[2, 2] = 65534
    p.write_bytes(_png16(np.concatenate([u, a], -1)))
    with pytest.raises(ImageError, match=r"transparency \(16-bit RGB\+alpha; 1 of 64"):
        images.load_image(p)
    g = _u16((8, 8, 1))
    q = tmp_path / "ga16.png"
    q.write_bytes(_png16(np.concatenate([g, np.full_like(g, 65535)], -1)))
    x, notes = images.load_image(q)
    np.testing.assert_array_equal(x, np.repeat(g, 3, -1).astype(np.float32) / np.float32(65535))
    assert "grayscale (16-bit) replicated to RGB" in notes


def test_load_16bit_colour_key(tmp_path):
    g = _u16((8, 8, 1))
    p = tmp_path / "k.png"
    p.write_bytes(_png16(g, trns=[int(g[1, 1, 0])]))
    with pytest.raises(ImageError, match="transparency"):
        images.load_image(p)
    g[g == 7] = 8
    p.write_bytes(_png16(g, trns=[7]))  # key not present: opaque
    _, notes = images.load_image(p)
    assert any("fully opaque" in n for n in notes)


def test_load_cmyk_jpeg(tmp_path):
    c = np.zeros((16, 16, 4), np.uint8)
    c[:8, :8] = (0, 0, 0, 0)        # white
    c[:8, 8:] = (0, 0, 0, 255)      # black
    c[8:, :8] = (255, 0, 0, 0)      # cyan
    c[8:, 8:] = (0, 255, 255, 0)    # red
    p = _save(tmp_path / "cmyk.jpg", Image.fromarray(c, "CMYK"), quality=100)
    assert Image.open(p).mode == "CMYK"
    x, notes = images.load_image(p)
    np.testing.assert_array_equal(x, _exact8(np.asarray(Image.open(p).convert("RGB"))))
    want = {(2, 2): (255, 255, 255), (2, 13): (0, 0, 0), (13, 2): (0, 255, 255),
            (13, 13): (255, 0, 0)}
    for (i, j), rgb in want.items():
        np.testing.assert_allclose(x[i, j] * 255, rgb, atol=4)
    assert any("CMYK image converted to RGB" in n for n in notes)


def test_load_exif_orientation_matches_pillow(tmp_path):
    u = _rgb(8)
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        p = _save(tmp_path / f"o{o}.png", u, exif=exif)
        x, notes = images.load_image(p)
        want = np.asarray(ImageOps.exif_transpose(Image.open(p)).convert("RGB"))
        np.testing.assert_array_equal(images.to_uint8(x), want)
        assert any("EXIF orientation" in n for n in notes) == (o != 1)


# ---------------------------------------------------------------------------------------------
# load_image: bad files
# ---------------------------------------------------------------------------------------------


def test_not_square(tmp_path):
    with pytest.raises(ImageError) as e:
        images.load_image(_save(tmp_path / "r.png", _rgb(32, 40)))
    assert "not square: 40x32 (width x height)" in str(e.value)


def test_wrong_size_with_resolution(tmp_path):
    p = _save(tmp_path / "s.png", _rgb(48))
    x, _ = images.load_image(p)  # no resolution: size is not checked
    assert x.shape == (48, 48, 3)
    with pytest.raises(ImageError) as e:
        images.load_image(p, resolution=1024)
    assert e.value.path == p
    assert "48x48 does not divide" in str(e.value)
    assert "1, 2, 4, 8, 16, 32, 64, 128, 256, 512" in str(e.value)
    x, _ = images.load_image(_save(tmp_path / "ok.png", _rgb(32)), resolution=1024)
    assert x.shape == (32, 32, 3)


@pytest.mark.parametrize("fmt,suffix", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated(tmp_path, fmt, suffix):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64)).save(buf, format=fmt)
    data = buf.getvalue()
    # cut in the pixel data, just before the end, and (PNG) only the final IEND chunk missing
    for cut in [len(data) // 2, len(data) - 1, len(data) - 12]:
        p = tmp_path / f"t{cut}.{suffix}"
        p.write_bytes(data[:cut])
        with pytest.raises(ImageError) as e:
            images.load_image(p)
        assert f"{fmt} file is truncated" in str(e.value), str(e.value)


def test_truncated_stays_detected_when_pillow_flag_is_on(tmp_path, monkeypatch):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64)).save(buf, format="JPEG")
    p = tmp_path / "t.jpg"
    p.write_bytes(buf.getvalue()[:-200])
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match="JPEG file is truncated"):
        images.load_image(p)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_truncated_16bit_png(tmp_path):
    data = _png16(_u16((8, 8, 3)))
    p = tmp_path / "t.png"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match="PNG file is truncated"):
        images.load_image(p)


def test_corrupt_png_crc(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(16)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[60] ^= 0xFF  # inside IDAT
    p = tmp_path / "c.png"
    p.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="PNG file is corrupt: CRC mismatch in the IDAT chunk"):
        images.load_image(p)


def test_garbage_empty_missing_folder(tmp_path):
    g = tmp_path / "garbage.png"
    g.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(ImageError, match="not a readable image: Pillow cannot identify it"):
        images.load_image(g)
    e = tmp_path / "empty.png"
    e.write_bytes(b"")
    with pytest.raises(ImageError, match=r"file is empty \(0 bytes\)"):
        images.load_image(e)
    with pytest.raises(ImageError, match="file not found"):
        images.load_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="is a folder"):
        images.load_image(tmp_path)


def test_unsupported_mode(tmp_path):
    p = _save(tmp_path / "f.tiff", Image.fromarray(np.zeros((4, 4), np.float32), "F"))
    with pytest.raises(ImageError, match="unsupported pixel format 'F'"):
        images.load_image(p)


def test_image_error_is_value_error_and_pickles(tmp_path):
    err = ImageError(tmp_path / "a.png", "boom")
    assert isinstance(err, ValueError)
    assert str(err) == f"{tmp_path / 'a.png'}: boom"
    back = pickle.loads(pickle.dumps(err))
    assert back.path == err.path and back.message == "boom" and str(back) == str(err)
    assert str(ImageError(None, "just this")) == "just this"


# ---------------------------------------------------------------------------------------------
# check_size
# ---------------------------------------------------------------------------------------------


def test_check_size():
    assert images.check_size(32, 1024) == 32
    assert images.check_size(512, 1024) == 2
    assert images.check_size(1, 1024) == 1024
    assert images.check_size(16, 64) == 4
    assert images.valid_lr_sizes(1024) == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
    assert images.valid_lr_sizes(96) == [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48]
    with pytest.raises(ImageError) as e:
        images.check_size(48, 1024)
    msg = str(e.value)
    assert "48x48 does not divide" in msg and "integer factor" in msg
    assert "valid sizes are 1, 2, 4, 8, 16, 32, 64, 128, 256, 512" in msg
    assert e.value.path is None
    with pytest.raises(ImageError, match="1024x1024 is not smaller than"):
        images.check_size(1024, 1024)
    with pytest.raises(ImageError, match="2048x2048 is not smaller than"):
        images.check_size(2048, 1024)
    with pytest.raises(ImageError, match="positive"):
        images.check_size(0, 1024)
    with pytest.raises(ValueError, match="resolution"):
        images.check_size(4, 1)


# ---------------------------------------------------------------------------------------------
# to_uint8 / save_png
# ---------------------------------------------------------------------------------------------


def test_to_uint8():
    x = np.array([-0.5, 0.0, 0.5, 0.999, 1.0, 2.0, np.nan, 0.7 / 255, 1.6 / 255], np.float32)
    np.testing.assert_array_equal(images.to_uint8(x), [0, 0, 127, 254, 255, 255, 0, 0, 1])
    np.testing.assert_array_equal(images.to_uint8(x, "round"),
                                  [0, 0, 128, 255, 255, 255, 0, 1, 2])
    allb = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(images.to_uint8(allb.astype(np.float32) / np.float32(255)),
                                  allb)
    np.testing.assert_array_equal(images.to_uint8(allb), allb)  # uint8 passes through
    # float32 arithmetic like torch's mul(255).byte(): 0.2 * 255 = 51.000004 -> 51
    assert images.to_uint8(np.float64(0.2)) == 51
    with pytest.raises(ValueError, match="rounding"):
        images.to_uint8(x, "nearest")


def test_save_png_round_trip(tmp_path):
    x = np.random.default_rng(5).random((16, 16, 3)).astype(np.float32) * 1.2 - 0.1
    p = images.save_png(tmp_path / "out" / "deep" / "a.png", x)
    y, notes = images.load_image(p)
    np.testing.assert_array_equal(y, _exact8(images.to_uint8(x)))
    assert notes == []
    images.save_png(p, x, rounding="round")
    np.testing.assert_array_equal(images.load_image(p)[0], _exact8(images.to_uint8(x, "round")))
    assert sorted(os.listdir(p.parent)) == ["a.png"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert (p.stat().st_mode & 0o777) == (0o666 & ~umask)  # as open() would create it
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        images.save_png(tmp_path / "b.png", np.zeros((4, 4)))
