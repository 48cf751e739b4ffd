"""Tests for pulse_jax.pictures: the contact sheet of one face's restarts, image grids."""

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from pulse_jax import images, pictures



def _sheet_inputs(r=64, s=16, n=4, seed=0):
    g = np.random.default_rng(seed)
    lr = g.random((s, s, 3)).astype(np.float32)
    hr = g.random((n, r, r, 3)).astype(np.float32)
    l2 = np.array([0.00342, 0.00191, 0.0025, np.nan][:n])
    return lr, hr, l2


def test_contact_sheet_layout_and_pixels():
    lr, hr, l2 = _sheet_inputs()
    sheet, boxes = pictures.contact_sheet(lr, hr[1], hr, l2, 1, eps=2e-3, return_boxes=True)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert len(boxes) == 2 + 4
    want = [np.repeat(np.repeat(images.to_uint8(lr), 4, 0), 4, 1), images.to_uint8(hr[1])] + [
        images.to_uint8(h) for h in hr]
    for (x0, y0, x1, y1), w in zip(boxes, want):
        assert (x1 - x0, y1 - y0) == (64, 64)
        np.testing.assert_array_equal(sheet[y0:y1, x0:x1], w)
    # one row, left to right, labels below the tiles inside the sheet
    assert all(b[1] == boxes[0][1] for b in boxes)
    assert all(boxes[i][2] <= boxes[i + 1][0] for i in range(len(boxes) - 1))
    assert sheet.shape[1] > boxes[-1][2] and sheet.shape[0] > boxes[0][3] + 15
    below = sheet[boxes[0][3] + 2:, :]
    assert (below < 128).any()  # some text was drawn
    # the same without eps / boxes
    plain = pictures.contact_sheet(lr, hr[1], list(hr), l2, 1)
    assert plain.ndim == 3


def test_contact_sheet_downscales_large_hr():
    lr, hr, l2 = _sheet_inputs(r=128, s=32, n=2)
    sheet, boxes = pictures.contact_sheet(lr, hr[0], hr, l2, 0, tile_size=32, return_boxes=True)
    x0, y0, x1, y1 = boxes[1]
    assert (x1 - x0, y1 - y0) == (32, 32)
    block = images.to_uint8(hr[0]).astype(np.float64).reshape(32, 4, 32, 4, 3).mean((1, 3))
    np.testing.assert_allclose(sheet[y0:y1, x0:x1], block, atol=1)
    x0, y0, x1, y1 = boxes[0]  # LR 32 -> tile 32: unchanged
    np.testing.assert_array_equal(sheet[y0:y1, x0:x1], images.to_uint8(lr))


def test_contact_sheet_bad_arguments():
    lr, hr, l2 = _sheet_inputs()
    with pytest.raises(ValueError, match="one l2 per restart"):
        pictures.contact_sheet(lr, hr[0], hr, l2[:2], 0)
    with pytest.raises(ValueError, match="best_index"):
        pictures.contact_sheet(lr, hr[0], hr, l2, 4)
    with pytest.raises(ValueError, match="square"):
        pictures.contact_sheet(lr[:8], hr[0], hr, l2, 0)


def test_contact_sheet_render_for_eyes(tmp_path):
    """Writes a sheet to look at (set PULSE_SHEET_OUT to keep it)."""
    yy, xx = np.mgrid[0:256, 0:256] / 255.0
    hr = np.stack([np.stack([xx, yy, np.full_like(xx, k / 4)], -1) for k in range(4)])
    lr = hr[1].reshape(32, 8, 32, 8, 3).mean((1, 3))
    out = pathlib.Path(os.environ.get("PULSE_SHEET_OUT", tmp_path)) / "sheet.png"
    sheet = pictures.contact_sheet(lr, hr[1], hr, [0.00342, 0.00191, 0.0025, float("nan")], 1,
                                 eps=2e-3)
    images.save_png(out, sheet)  # uint8 is written as is
    np.testing.assert_array_equal(np.asarray(Image.open(out)), sheet)


def test_image_grid_places_tiles_row_major_with_padding():
    tiles = np.arange(1, 6, dtype=np.uint8)[:, None, None, None] * np.ones((5, 2, 3, 1), np.uint8)
    grid = pictures.image_grid(tiles, cols=3, pad=1)
    assert grid.shape == (2 * 2 + 1, 3 * 3 + 2, 1) and grid.dtype == np.uint8
    for i in range(5):
        r, q = divmod(i, 3)
        np.testing.assert_array_equal(grid[r * 3:r * 3 + 2, q * 4:q * 4 + 3], i + 1)
    assert (grid[2] == 0).all() and (grid[:, 3] == 0).all()     # padding rows/columns
    assert (grid[3:, 8:] == 0).all()                             # the sixth cell is blank
    assert pictures.image_grid(tiles).shape == (2 * 2, 3 * 3, 1)  # default: ceil(sqrt(5)) = 3 columns
