"""The web app's request handling, in this process and without a browser: uploads checked
before decoding, the tiny-face/photo rule, settings, per-request folders, the models offered,
one tiny face through the library, and the command without gradio.

The server and the page are tested in a real browser by tests/test_app_browser.py.
"""

from __future__ import annotations

import json
import pathlib
import shutil
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from pulse_jax import app, weights
from pulse_jax.app import handle
from pulse_jax.cli import app_command, run

# The app extra and chromium: the newest set does not install them (setup.cfg, marker app).
pytestmark = pytest.mark.app

ROOT = pathlib.Path(__file__).resolve().parents[1]
FACE = ROOT / "examples" / "face_00.png"


@pytest.fixture(scope="module")
def shipped():
    m = app.Models(app.available_models(checkpoint="default"))
    return m.get(None)


def png(path: pathlib.Path, size=(40, 30), mode="RGB") -> pathlib.Path:
    Image.new(mode, size, 90).save(path)
    return path


def test_read_upload_accepts_an_image_and_names_it_safely(tmp_path):
    up = app.read_upload(png(tmp_path / "x.png"), name="../../etc/my face!.png")
    assert (up.format, up.size, up.stem) == ("PNG", (40, 30), "my_face")


@pytest.mark.parametrize("make, expected", [
    (lambda p: p.write_text("not an image at all"), "not an image"),
    (lambda p: p.write_bytes(b""), "empty"),
    (lambda p: p.write_bytes(FACE.read_bytes()[:60]), "truncated or corrupt"),
    (lambda p: Image.new("RGB", (8, 8)).save(p, format="GIF"), "GIF image"),
    # A decompression bomb: 100 million pixels in a few kB, refused from its header.
    (lambda p: Image.new("1", (10000, 10000)).save(p, format="PNG"), "million pixels"),
])
def test_read_upload_refuses_bad_files_with_a_message(tmp_path, make, expected):
    path = tmp_path / "upload.png"
    make(path)
    with pytest.raises(app.UploadError, match=expected):
        app.read_upload(path)


def test_read_upload_refuses_a_file_over_the_size_limit(tmp_path):
    with pytest.raises(app.UploadError, match="over the upload limit"):
        app.read_upload(png(tmp_path / "x.png", (300, 300)), app.Limits(max_bytes=100))


@pytest.mark.parametrize("size, degradation, expected", [
    ((8, 8), "", app.FACE), ((16, 16), "", app.FACE), ((32, 32), "", app.FACE),
    ((64, 64), "", app.PHOTO), ((48, 48), "", app.PHOTO), ((240, 160), "", app.PHOTO),
    ((8, 16), "", app.PHOTO),
    ((16, 16), "blur(sigma=1)|downscale(factor=4,kernel=bicubic)", app.FACE),
    ((8, 8), "downscale(factor=4,kernel=bicubic)", app.PHOTO),
])
def test_route_rule(size, degradation, expected):
    assert app.route(size, 64, degradation) == expected


def test_route_refuses_a_bad_degradation():
    with pytest.raises(app.UploadError, match="degradation"):
        app.route((8, 8), 64, "sharpen(3)")


@pytest.mark.parametrize("field, value", [("restarts", 0), ("steps", 2.5), ("upscale", 99),
                                          ("eps", 0.0), ("seed", -1)])
def test_settings_out_of_range_are_refused(field, value):
    with pytest.raises(app.UploadError, match=field):
        handle.check_settings(app.Settings(**{field: value}))


def test_work_folders_are_removed_once_answered(tmp_path):
    work = app.WorkFolders(tmp_path / "w")
    first = work.new()
    (first / "f.txt").write_text("x")
    work.finish(first)
    second = work.new()
    assert not first.exists() and second.exists()
    work.close()
    assert not (tmp_path / "w" / "requests").exists()
    own = app.WorkFolders()
    own.close()
    assert not own.root.exists()


def test_models_offered_are_the_shipped_and_the_caches(tmp_path):
    mine = tmp_path / "checkpoints" / "mine"
    mine.mkdir(parents=True)
    shutil.copy(weights.default_checkpoint_path() / "manifest.json", mine)
    found = app.available_models(cache_dir=str(tmp_path))
    assert list(found) == ["default (64x64)", "mine (64x64)"]
    with pytest.raises(ValueError, match="no model"):
        app.Models(found).get("nope")


def test_a_tiny_face_through_the_library(tmp_path, shipped):
    gen, ckpt = shipped
    told = []
    out = app.upsample_upload(FACE, app.Settings(steps=3, restarts=2), gen, ckpt, tmp_path,
                              name="face_00.png", tell=lambda f, t: told.append((f, t)))
    assert out.route == app.FACE
    assert Image.open(out.output).size == (64, 64)
    assert told[-1][0] == 1.0 and "step 3/3, best l2" in told[-1][1]
    sheet, var = out.pictures
    assert "r0 l2" in sheet[1] and "r1 l2" in sheet[1] and "variability" in var[1]
    rec, = out.records
    assert rec["output"] == "output/face_00.png" and len(rec["restart_l2"]) == 2
    assert str(tmp_path) not in json.dumps(out.records)   # no server paths in the page
    with zipfile.ZipFile(out.archive) as z:
        names = set(z.namelist())
    assert {"input/face_00.png", "output/face_00.png", "output/manifest.jsonl",
            "output/face_00_sheet.png"} <= names


def test_a_photo_with_no_face_says_so(tmp_path, shipped):
    gen, ckpt = shipped
    photo = tmp_path / "sky.png"
    Image.fromarray(np.linspace(0, 255, 120 * 80 * 3).reshape(80, 120, 3).astype(np.uint8)
                    ).save(photo)
    with pytest.raises(app.UploadError, match="face"):
        app.upsample_upload(photo, app.Settings(steps=2, restarts=1), gen, ckpt,
                            tmp_path / "req")


def test_an_output_over_the_pixel_limit_is_refused(tmp_path, shipped):
    gen, ckpt = shipped
    with pytest.raises(app.UploadError, match="smaller upscale"):
        app.upsample_upload(png(tmp_path / "big.png", (400, 300)), app.Settings(upscale=8),
                            gen, ckpt, tmp_path / "req",
                            limits=app.Limits(max_output_pixels=1_000_000))


def test_the_command_without_gradio_names_the_extra(monkeypatch, capsys):
    real = app_command.importlib.util.find_spec
    monkeypatch.setattr(app_command.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gradio" else real(name, *a))
    assert run(["app", "--port=7999"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == 'pulse-jax: the web app needs gradio: pip install "pulse-jax[app]"'


def test_the_rest_of_pulse_jax_never_imports_gradio():
    code = ("import sys, pulse_jax, pulse_jax.cli.main, pulse_jax.app, pulse_jax.batch, "
            "pulse_jax.align; assert 'gradio' not in sys.modules, 'gradio imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
