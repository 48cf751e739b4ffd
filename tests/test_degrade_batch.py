"""The batch runner with ``degradation``: per-face masks read from ``{stem}_mask.png``, a bad
mask or observation failing only its face, the operator in the manifest and the hash, gray
observations, and the config/CLI field with its error for a bad string."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from PIL import Image

import fakes
from pulse_jax import batch, cli, degrade, exit_codes, run_config, weights
from pulse_jax.search import SearchConfig

# Our own file and command-line code: the newest set skips it (setup.cfg, marker io).
pytestmark = pytest.mark.io

R = fakes.TINY_CONFIG.resolution
CFG = SearchConfig(steps=2, restarts=1)


def _run(inp, out, degradation, **kw):
    msgs = []
    s = batch.run_batch(fakes.tiny_generator(), inp, out, CFG, progress=False, devices=1,
                        batch_size=2, log=msgs.append, degradation=degradation, **kw)
    return s, {r["name"]: r for r in batch.read_records(out)}, msgs


def _mask(path, size=R, hole=(8, 20)):
    m = np.full((size, size), 255, np.uint8)
    m[hole[0]:hole[1], hole[0]:hole[1]] = 0
    Image.fromarray(m).save(path)


@pytest.mark.slow
def test_masks_beside_inputs(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    faces = fakes.write_faces(inp, 4, size=R)  # inpainting: observations of the HR size
    _mask(inp / "face00_mask.png")
    _mask(inp / "face01_mask.png")
    _mask(inp / "face02_mask.png", size=16)          # wrong size
    # face03 has no mask
    s, recs, msgs = _run(inp, out, "mask()", save_lr=True)
    assert set(recs) == {"face00", "face01", "face02", "face03"}  # the masks are not faces
    for name in ("face00", "face01"):
        r = recs[name]
        assert "error" not in r and r["degradation"] == "mask()"
        assert r["mask"].endswith(f"{name}_mask.png") and len(r["mask_sha256"]) == 64
        assert fakes.png_ok(out / f"{name}_lr.png").shape == (R, R, 3)
        assert r["success"] == (r["l2"] <= r["eps"])
    assert "mask is 16x16" in recs["face02"]["error"] and str(faces[2]) in recs["face02"]["error"]
    assert "face03_mask.png is missing" in recs["face03"]["error"]
    assert any("face03_mask.png is missing" in m for m in msgs)  # said, and the batch went on
    assert {recs[n]["error_kind"] for n in ("face02", "face03")} == {"input"}
    assert (s.done, s.bad) == (2, 2) and batch.exit_status(s) == exit_codes.BAD_INPUT
    assert s.config_hash != batch.config_hash(fakes.tiny_generator(), CFG, 0)

    # Resume: nothing is redone, until a mask changes (or a missing one appears).
    s2, _, _ = _run(inp, out, "mask()")
    assert (s2.done, s2.skipped) == (0, 4)
    _mask(inp / "face01_mask.png", hole=(2, 10))
    _mask(inp / "face03_mask.png")
    s3, recs3, _ = _run(inp, out, "mask()")
    assert (s3.done, s3.skipped) == (2, 2)
    assert "error" not in recs3["face03"]


@pytest.mark.slow
def test_gray_observations_and_bad_shapes(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    Image.fromarray(fakes.face_array(0)[..., 0]).save(inp.mkdir() or inp / "gray.png")
    Image.fromarray(fakes.face_array(1)).save(inp / "color.png")
    Image.fromarray(fakes.face_array(2, 16)[..., 0]).save(inp / "big.png")
    deg = "blur(sigma=1)|downscale(factor=4,kernel=area)|gray()|noise(sigma=0.02)"
    s, recs, _ = _run(inp, out, deg, save_lr=True, save_contact_sheet=True)
    r = recs["gray"]
    assert "error" not in r, r
    assert r["degradation"] == ("blur(sigma=1)|downscale(factor=4,kernel=area)|"
                                "gray(weights=601)|noise(sigma=0.02)")
    assert r["eps_effective"] == pytest.approx(CFG.eps + 0.02 ** 2)
    assert r["success"] == (r["l2"] <= r["eps_effective"])
    assert "one channel kept" in " ".join(r["notes"])
    lr = fakes.png_ok(out / "gray_lr.png")
    assert lr.shape == (8, 8, 3) and (lr[..., 0] == lr[..., 2]).all()
    assert fakes.png_ok(out / "gray_sheet.png").ndim == 3
    assert "has color" in recs["color"]["error"]
    assert "observes the 32x32 generator's images as 8x8x1" in recs["big"]["error"]
    assert (s.done, s.bad) == (1, 2)


def test_default_is_the_reference_operator(tmp_path):
    """The default records the bicubic downscale it used and keeps its config hash; naming
    that operator explicitly gives the same images."""
    inp = tmp_path / "in"
    fakes.write_faces(inp, 2)
    s, recs, _ = _run(inp, tmp_path / "a", "")
    assert s.config_hash == batch.config_hash(fakes.tiny_generator(), CFG, 0)
    assert {r["degradation"] for r in recs.values()} == {"downscale(factor=4,kernel=bicubic)"}
    _, recs_b, _ = _run(inp, tmp_path / "b", "downscale(factor=4,kernel=bicubic)")
    for n in recs:
        assert recs[n]["l2"] == recs_b[n]["l2"]
        np.testing.assert_array_equal(fakes.png_ok(tmp_path / "a" / f"{n}.png"),
                                      fakes.png_ok(tmp_path / "b" / f"{n}.png"))


def test_degradation_string_is_parsed_once(tmp_path, monkeypatch):
    """BatchOptions parses the string (a bad one fails there, before any face); the run
    reuses that operator: nothing is parsed again, however many faces and sizes."""
    inp = tmp_path / "in"
    fakes.write_faces(inp, 2)
    fakes.write_faces(inp, 1, size=16, prefix="big")
    opts = batch.BatchOptions(degradation="blur(sigma=1)|downscale(factor=4,kernel=area)",
                              progress=False, devices=1, batch_size=2)
    real, parsed = degrade.parse, []
    monkeypatch.setattr(degrade, "parse", lambda text: parsed.append(text) or real(text))
    s = batch.run_batch(fakes.tiny_generator(), inp, tmp_path / "out", CFG, opts,
                        log=lambda m: None)
    assert parsed == []
    assert (s.done, s.bad) == (2, 1)  # the 16x16 face does not fit the operator


def test_bad_string_is_a_config_error():
    with pytest.raises(ValueError, match="unknown operator 'blurr'"):
        batch.BatchOptions(degradation="blurr(sigma=1)")
    config = run_config.get_config()
    assert config.degradation == ""
    config.degradation = "downscale(factor=8)|"
    with pytest.raises(ValueError, match="stray"):
        run_config.split(config)
    with pytest.raises(cli.UsageError, match="invalid config: bad degradation"):
        cli.upsample(config, log=lambda m: None)


@pytest.mark.slow
def test_command_with_a_degradation(tmp_path):
    """``pulse-jax upsample --config.degradation=...`` with the shipped model: gray 16 x 16
    observations of blurred faces are searched through that operator and each record names
    it; the recovered faces are colour images at the model's resolution."""
    op = "blur(sigma=1)|downscale(factor=4,kernel=bicubic)|gray(weights=709)"
    gen = weights.default_generator()
    faces = np.asarray(gen.sample(jax.random.PRNGKey(0), 2))
    observed = np.asarray(degrade.parse(op)(faces))
    inp = tmp_path / "in"
    inp.mkdir()
    for k, o in enumerate(observed):
        Image.fromarray(np.round(np.clip(o[..., 0], 0, 1) * 255).astype(np.uint8)).save(
            inp / f"face{k}.png")
    out = tmp_path / "out"
    status = cli.run(["upsample", f"--input_dir={inp}", f"--output_dir={out}",
                      "--checkpoint=default", f"--config.degradation={op}",
                      "--config.search.steps=20", "--config.devices=1",
                      "--config.progress=False"])
    assert status in (exit_codes.OK, exit_codes.MISSED_EPS)
    recs = {r["name"]: r for r in batch.read_records(out)}
    assert sorted(recs) == ["face0", "face1"]
    assert {r["degradation"] for r in recs.values()} == {op}
    hr = np.asarray(Image.open(out / "face0.png"))
    assert hr.shape == (gen.resolution, gen.resolution, 3)
