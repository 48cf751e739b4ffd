"""The variability map: the per-pixel spread of a face's restarts (pulse_jax.search.variability),
in Result, the batch's files and records, and the contact sheet."""

from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image

from pulse_jax import batch, files, images, pictures, search
from pulse_jax.search import variability

import fakes

LUMA = np.array(variability.LUMA)


def test_spread_is_zero_when_restarts_agree_and_positive_when_not():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.uniform(0, 1, (2, 1, 8, 8, 3)), 4, axis=1)    # [N, K, R, R, 3]
    maps, used = variability.spread(same, np.ones((2, 4), bool))
    np.testing.assert_allclose(np.asarray(maps), 0.0, atol=1e-6)
    assert np.asarray(used).tolist() == [4, 4]
    differ = rng.uniform(0, 1, (2, 4, 8, 8, 3))
    maps, _ = variability.spread(differ, np.ones((2, 4), bool))
    want = (differ @ LUMA).std(axis=1)              # the population deviation over restarts
    np.testing.assert_allclose(np.asarray(maps), want, rtol=1e-5, atol=1e-6)
    assert (np.asarray(maps) > 0).all()
    black_white = np.stack([np.zeros((4, 4, 3)), np.ones((4, 4, 3))])[None]
    np.testing.assert_allclose(np.asarray(variability.spread(black_white, [[1, 1]])[0]), 0.5,
                               rtol=1e-6)


def test_spread_uses_the_restarts_within_eps_when_two_are():
    rng = np.random.default_rng(1)
    hr = rng.uniform(0, 1, (1, 4, 6, 6, 3))
    within = np.array([[True, False, True, False]])
    maps, used = variability.spread(hr, within)
    np.testing.assert_allclose(np.asarray(maps)[0], (hr[0, [0, 2]] @ LUMA).std(axis=0),
                               rtol=1e-5, atol=1e-6)
    assert int(used[0]) == 2
    maps, used = variability.spread(hr, [[False, True, False, False]])   # one: use all
    np.testing.assert_allclose(np.asarray(maps)[0], (hr[0] @ LUMA).std(axis=0),
                               rtol=1e-5, atol=1e-6)
    assert int(used[0]) == 4
    with pytest.raises(ValueError, match="at least 2 restarts"):
        variability.spread(hr[:, :1], within[:, :1])


@pytest.fixture(scope="module")
def small_generator():
    return fakes.tiny_generator()


def test_result_carries_the_map_of_its_restart_images(small_generator):
    gen = small_generator
    lr = np.stack([fakes.face_array(i) for i in range(2)]).astype(np.float32) / 255
    cfg = search.SearchConfig(steps=3, restarts=3, keep_restart_images=True, chunk_steps=3)
    res = search.upsample(gen, lr, cfg)
    r = gen.resolution
    assert res.variability.shape == (2, r, r) and res.variability_restarts.shape == (2,)
    within = np.asarray(res.restart_l2) <= cfg.eps
    want, used = variability.spread(res.restart_hr, within)
    np.testing.assert_allclose(res.variability, np.asarray(want), atol=1e-6)
    np.testing.assert_array_equal(res.variability_restarts, np.asarray(used))
    np.testing.assert_allclose(res.variability_score, res.variability.mean(axis=(1, 2)))
    assert (res.variability_score > 0).all()        # three random starts draw three faces
    one = search.upsample(gen, lr, search.SearchConfig(steps=3, restarts=1,
                                                       keep_restart_images=True, chunk_steps=3))
    assert one.variability is None and one.variability_score is None


def test_batch_writes_the_map_or_says_why_not(small_generator, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    images.save_png(src / "a.png", fakes.face_array(0))
    cfg = search.SearchConfig(steps=3, restarts=2, chunk_steps=3)
    opts = batch.BatchOptions(save_variability=True, save_contact_sheet=True, progress=False)
    batch.run_batch(small_generator, str(src), tmp_path / "two", cfg, opts)
    (rec,) = files.read_jsonl(tmp_path / "two" / "manifest.jsonl")
    r = small_generator.resolution
    pair = np.asarray(Image.open(rec["variability_output"]))
    assert pair.shape == (r, 2 * r + max(2, r // 32), 3)
    assert 0 < rec["variability"] <= 0.5 and rec["variability_restarts"] in (1, 2)
    hr = images.load_image(rec["output"])[0]
    np.testing.assert_allclose(pair[:, :r] / 255, hr, atol=1 / 255)  # the face, then its map
    assert pathlib.Path(rec["sheet"]).is_file()
    cfg1 = search.SearchConfig(steps=3, restarts=1, chunk_steps=3)
    batch.run_batch(small_generator, str(src), tmp_path / "one", cfg1, opts)
    (rec1,) = files.read_jsonl(tmp_path / "one" / "manifest.jsonl")
    assert rec1["variability"] is None and "2 or more" in rec1["variability_note"]
    assert not (tmp_path / "one" / "a_variability.png").exists()


def test_colour_map_and_pair():
    m = np.array([[0.0, pictures.VARIABILITY_RANGE], [1.0, np.nan]])
    c = pictures.colour_map(m)
    assert c.shape == (2, 2, 3) and c.dtype == np.uint8
    assert c[0, 0].tolist() == [0, 0, 4] and c[0, 1].tolist() == c[1, 0].tolist()
    assert c[0, 0].sum() < c[0, 1].sum()           # brighter where restarts differ
    with pytest.raises(ValueError, match="differ in size"):
        pictures.variability_pair(np.zeros((4, 4, 3)), np.zeros((5, 5)))
    rng = np.random.default_rng(2)
    restarts = rng.uniform(0, 1, (2, 16, 16, 3))
    spread = np.asarray(variability.spread(restarts[None], [[True, True]])[0][0])
    args = (np.zeros((4, 4, 3)), restarts[0], restarts, [1e-3, 2e-3], 0)
    plain, boxes = pictures.contact_sheet(*args, return_boxes=True)
    sheet, boxes_v = pictures.contact_sheet(*args, return_boxes=True, variability=spread)
    assert len(boxes_v) == len(boxes) + 1 and sheet.shape[1] > plain.shape[1]
    x0, y0, x1, y1 = boxes_v[-1]
    np.testing.assert_array_equal(sheet[y0:y1, x0:x1], pictures.colour_map(spread))
