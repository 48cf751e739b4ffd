"""pulse_jax.align: detection, framing, the crop recipe, paste-back, bad input, folders.

The faces are samples of our own shipped 64x64 generator (tests/data/align, committable),
upscaled and placed into synthetic photos under known rotation, scale and shift beside
another face. (benchmarks/align_eval.py does the same with real FFHQ faces.)
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from pulse_jax import exit_codes, files
from pulse_jax.align import (AlignError, AlignedFace, FaceRules, Refused, Template, align_photo,
                             framing, load_photo, paste_back, quad as quads, template)
from pulse_jax.cli.align_command import align_main
from pulse_jax.align.detect import detect_faces

# Our own file and command-line code: the newest set skips it (setup.cfg, marker io).
pytestmark = pytest.mark.io

DATA = pathlib.Path(__file__).parent / "data" / "align"
#: The fixed-size era's photo run (every face, LR 8 for the 64 px model): these faces are
#: larger than the generator, which the size rule would leave alone.
FIXED8 = FaceRules(lr_size=8, replace_large_faces=True)


def face(k: int, side: int = 256) -> Image.Image:
    """Sample ``k`` of the shipped generator, upscaled bicubically to ``side``."""
    return Image.open(DATA / f"utkface64_sample_{k}.png").convert("RGB").resize(
        (side, side), Image.BICUBIC)


def place(canvas: Image.Image, img: Image.Image, angle: float, at: tuple[int, int]) -> None:
    mask = Image.new("L", img.size, 255).rotate(angle, Image.BICUBIC, expand=True)
    canvas.paste(img.rotate(angle, Image.BICUBIC, expand=True), at, mask)


def scene(k: int, angle: float, side: int, at: tuple[int, int],
          size: tuple[int, int] = (900, 700)) -> tuple[np.ndarray, np.ndarray]:
    """A photo with face ``k`` (rotated, ``side`` px) at ``at`` and another face beside it;
    returns the photo and the target face's centre."""
    canvas = Image.new("RGB", size, (70, 110, 150))
    place(canvas, face((k + 1) % 3, 200), 0.0, (size[0] - 210, 10))
    place(canvas, face(k, side), angle, at)
    rot = side * (abs(np.cos(np.radians(angle))) + abs(np.sin(np.radians(angle))))
    return np.asarray(canvas), np.array(at) + rot / 2


def own_points(k: int, num: int = 5) -> np.ndarray:
    """Face ``k``'s anchors in its own frame, [5, 2] in [0, 1]."""
    f = detect_faces(np.asarray(face(k)), num)[0]
    return framing.anchors((f.landmarks + 0.5) / 256)


def target(results: list, centre: np.ndarray) -> AlignedFace:
    """The aligned face nearest ``centre``; it must be there (within 15% of its crop)."""
    faces = [r for r in results if isinstance(r, AlignedFace)]
    best = min(faces, key=lambda f: np.hypot(*(quads.unit_to_photo([0.5, 0.5], f.quad)
                                                - centre)))
    off = np.hypot(*(quads.unit_to_photo([0.5, 0.5], best.quad) - centre))
    assert off < 0.15 * quads.quad_size(best.quad), "the placed face was not found"
    return best


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-12)))


def test_importing_align_does_not_import_dlib():
    code = "import sys, pulse_jax, pulse_jax.align; print('dlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("k, angle, side, at", [(0, 0.0, 256, (100, 150)),
                                                (1, 20.0, 300, (200, 120)),
                                                (2, -12.0, 256, (330, 300))])
def test_known_framing_is_recovered(k, angle, side, at):
    """Aligned to the face's own framing, the crop puts its landmarks where the template
    says (within 2% of the crop) and looks like the original face."""
    tpl = Template(name="own", points5=own_points(k))
    photo, centre = scene(k, angle, side, at)
    got = target(align_photo(photo, 256, template=tpl), centre)
    pts = framing.anchors((detect_faces(got.image, 5)[0].landmarks + 0.5) / 256)
    err = np.hypot(*(pts - tpl.points5).T)
    assert err.mean() < 0.025  # dlib jitters by ~2% of the crop on these blurry faces
    inner = slice(26, 230)
    original = np.asarray(face(k))
    assert psnr(got.image[inner, inner], original[inner, inner]) > 22


def test_68_point_recipe_is_rotation_invariant():
    photo0, c0 = scene(0, 0.0, 256, (100, 150))
    photo1, c1 = scene(0, 25.0, 256, (200, 120))
    a = target(align_photo(photo0, 128, num_landmarks=68), c0)
    b = target(align_photo(photo1, 128, num_landmarks=68), c1)
    assert psnr(a.image[13:115, 13:115], b.image[13:115, 13:115]) > 22


def test_ffhq_quad_geometry():
    """A frontal, upright face gives an axis-aligned square quad centred between the eyes
    and the mouth, as NVIDIA's formula says."""
    lm = np.zeros((68, 2))
    lm[36:42] = [100, 100]
    lm[42:48] = [140, 100]
    lm[48], lm[54] = [105, 150], [135, 150]
    quad, qsize = quads.ffhq_quad(lm)
    # eye-to-eye 40, eye-to-mouth 50: half side max(80, 90) = 90, centre (120, 105)
    assert qsize == pytest.approx(180)
    np.testing.assert_allclose(quad, [[30, 15], [30, 195], [210, 195], [210, 15]])
    np.testing.assert_allclose(quads.photo_to_unit(quads.unit_to_photo([0.3, 0.7], quad),
                                                   quad), [0.3, 0.7])


def test_5_point_ffhq_quad_is_close_to_the_68_point_one():
    """With 5 landmarks the FFHQ recipe runs on eyes and mouth estimated from them: on our
    test faces its quad's corners stay within 4% of the crop of the 68-point recipe's
    (measured 2.1-2.9%; a similarity fit to the mean 5-point template is 5-7.5% off)."""
    for k in range(3):
        img = np.asarray(face(k))
        q5, _ = framing.face_quad(detect_faces(img, 5)[0].landmarks)
        q68, s68 = framing.face_quad(detect_faces(img, 68)[0].landmarks)
        assert np.hypot(*(q5 - q68).T).max() < 0.04 * s68


def test_5_point_ffhq_quad_follows_the_face():
    """Turning, scaling and shifting the landmarks turns, scales and shifts the quad."""
    lm = detect_faces(np.asarray(face(0)), 5)[0].landmarks
    a, b = 1.7 * np.exp(0.4j), 30 + 50j
    z = a * (lm @ [1, 1j]) + b
    moved, _ = framing.face_quad(np.stack([z.real, z.imag], axis=1))
    np.testing.assert_allclose(moved @ [1, 1j], a * (framing.face_quad(lm)[0] @ [1, 1j]) + b,
                               atol=1e-9)


def test_paste_back_restores_the_photo():
    photo, centre = scene(1, 20.0, 300, (200, 120))
    got = target(align_photo(photo, 256), centre)
    out = paste_back(photo, got.image, got.quad)
    assert out.shape == photo.shape and out.dtype == np.uint8
    ys, xs = np.mgrid[:photo.shape[0], :photo.shape[1]]
    uv = quads.photo_to_unit(np.stack([xs, ys], -1), got.quad)
    outside = (uv.min(-1) < 0) | (uv.max(-1) > 1)
    inside = (uv.min(-1) > 0.05) & (uv.max(-1) < 0.95)
    assert np.array_equal(out[outside], photo[outside])
    assert psnr(out[inside], photo[inside]) > 30
    # A face at another resolution (the generator's) goes back the same way.
    small = np.asarray(Image.fromarray(got.image).resize((64, 64), Image.LANCZOS)) / 255.0
    out64 = paste_back(photo, small, got.quad)
    assert np.array_equal(out64[outside], photo[outside])
    assert psnr(out64[inside], photo[inside]) > 20


def test_no_face_and_unreadable_files(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (300, 200), (90, 90, 90)).save(blank)
    with pytest.raises(AlignError, match="no face found") as e:
        align_photo(load_photo(blank), 64, path=blank)
    assert e.value.path == blank
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(AlignError, match="cannot read") as e:
        load_photo(bad)
    assert "bad.jpg" in str(e.value)
    with pytest.raises(AlignError, match="not found"):
        load_photo(tmp_path / "missing.png")


def test_small_and_cut_faces_are_refused():
    photo, _ = scene(0, 0.0, 256, (100, 150))
    (res,) = [r for r in align_photo(photo, 64, rules=FaceRules(lr_size=0, replace_large_faces=True,
                                                                min_face_px=10_000)) if r.box[0] < 500]
    assert isinstance(res, Refused) and "too small" in str(res.error)
    canvas = Image.new("RGB", (400, 400), (70, 110, 150))
    place(canvas, face(0, 256), 0.0, (-60, -60))  # the face's corner is off the photo
    results = align_photo(np.asarray(canvas), 64)
    assert results and all(isinstance(r, Refused) for r in results)
    assert "cut by the photo's border" in str(results[0].error)


def test_huge_photo_is_detected_on_a_reduced_copy():
    """8000x6000: the detector sees a copy reduced 5x; the crop comes from the full photo."""
    big = Image.new("RGB", (8000, 6000), (120, 100, 90))
    place(big, face(2, 1200), 10.0, (5000, 3000))
    small = big.resize((1600, 1200), Image.BOX)
    got_big = align_photo(np.asarray(big), 128)
    got_small = align_photo(np.asarray(small), 128)
    assert len(got_big) == len(got_small) == 1
    np.testing.assert_allclose(got_big[0].quad / 5, got_small[0].quad, atol=0.02 * 1200 / 5)
    assert psnr(got_big[0].image, got_small[0].image) > 25


def test_template_round_trip_and_estimate(tmp_path):
    faces = [np.asarray(Image.open(DATA / f"utkface64_sample_{k}.png").convert("RGB"))
             for k in range(3)]
    tpl = template.estimate_template(faces, "utkface64")
    assert tpl.notes["measured"] == 3
    # The shipped model frames faces wider than FFHQ: eyes about 0.39 of the frame apart.
    assert 0.33 < tpl.notes["eye_distance"] < 0.45
    back = framing.template_from_manifest({framing.MANIFEST_KEY: tpl.to_dict()})
    np.testing.assert_allclose(back.points5, tpl.points5, atol=1e-5)
    assert framing.template_from_manifest({}) is None


def test_write_template_into_a_checkpoint(tmp_path):
    import jax
    import pulse_jax
    from pulse_jax.weights import checkpoint as ckpt
    config = pulse_jax.GeneratorConfig(resolution=8, fmap_base=32, fmap_max=8,
                                       dlatent_size=8)
    gen = pulse_jax.random_generator(config, jax.random.PRNGKey(0))
    path = pulse_jax.save_generator(gen, tmp_path / "ck", dtype="float16",
                                    extra={"licence": "test"})
    tpl = Template(name="t", points5=framing.FFHQ_POINTS5)
    arrays = (path / "arrays.npz").read_bytes()
    template.write_template(path, tpl)
    assert (path / "arrays.npz").read_bytes() == arrays  # only the manifest changes
    manifest = ckpt.read_manifest(path)
    assert manifest["licence"] == "test"
    assert manifest["arrays"]["params/synthesis/" + next(
        k.split("/", 2)[2] for k in manifest["arrays"] if k.startswith("params/synthesis/"))
    ]["dtype"] == "float16"
    assert framing.template_from_manifest(manifest).name == "t"
    pulse_jax.load_generator(path)



@pytest.mark.slow
def test_template_command(tmp_path, capsys):
    """``pulse-jax template`` prints the template measured on the shipped model's samples; a
    bad checkpoint is one message and status 2; the old ``python -m
    pulse_jax.align.template`` says where the command went."""
    import fakes
    from pulse_jax import cli
    env = fakes.subprocess_env(cache_dir=tmp_path / "jax_cache")
    p = fakes.run_python(["-m", "pulse_jax.cli", "template", "--samples=6"], env)
    assert p.returncode == exit_codes.OK, p.stderr
    tpl = framing.Template.from_dict(json.loads(p.stdout))
    assert tpl.name == "utkface64" and tpl.notes["images"] == 6
    assert tpl.notes["source"] == "generator samples (seed 0, 6 drawn)"
    assert cli.run(["template", f"--checkpoint={tmp_path}/none"]) == exit_codes.USAGE
    err = capsys.readouterr().err
    assert f"{tmp_path}/none" in err and "Traceback" not in err
    old = fakes.run_python(["-m", "pulse_jax.align.template", "--samples=6"], env)
    assert old.returncode == 1 and "pulse-jax template" in old.stderr, old.stderr


def test_photos_exit_status():
    """``upsample --align``'s status is the batch's, except that a photo or face that could
    not be aligned turns a clean run into 1."""
    from pulse_jax import batch
    from pulse_jax.align import PhotosSummary, pipeline
    from pulse_jax.align.folder import AlignSummary

    def status(align_errors, **counts):
        return PhotosSummary(AlignSummary(1, 2, align_errors), batch.Summary(**counts),
                             pipeline.PasteSummary()).exit_status()

    assert status(0, succeeded=2) == exit_codes.OK
    assert status(1, succeeded=2) == exit_codes.BAD_INPUT
    assert status(1, failed=1) == exit_codes.MISSED_EPS
    assert status(0, bad=1) == exit_codes.BAD_INPUT

def test_align_command_on_a_folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    photo, _ = scene(0, 10.0, 256, (100, 150))
    Image.fromarray(photo).save(photos / "two.png")
    Image.new("RGB", (200, 150), (90, 90, 90)).save(photos / "empty.jpg")
    (photos / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    status = align_main([f"--input_dir={photos}", f"--output_dir={out}", "--size=64",
                         "--lr_size=8", "--template=ffhq", "--checkpoint=default"],
                        log=lambda m: None)
    assert status == exit_codes.BAD_INPUT  # two photos fail, the good one is done
    records = files.read_jsonl(out / "manifest.jsonl")
    errors = {pathlib.Path(r["input"]).name: r["error"] for r in records if "error" in r}
    assert set(errors) == {"empty.jpg", "broken.png"}
    assert "no face found" in errors["empty.jpg"] and "broken.png" in errors["broken.png"]
    faces = [r for r in records if "output" in r]
    assert [r["face_index"] for r in faces] == [0, 1]
    for r in faces:
        assert pathlib.Path(r["output"]).name == f"two_{r['face_index']}.png"
        assert Image.open(r["output"]).size == (64, 64)
        assert Image.open(r["lr_output"]).size == (8, 8)
        assert pathlib.Path(r["lr_output"]).parent == out / "lr"
        assert np.array(r["quad"]).shape == (4, 2) and len(r["landmarks"]) == 5
        json.dumps(r)
    assert align_main(["--output_dir=x"], log=lambda m: None) == exit_codes.USAGE
    assert align_main([f"--input_dir={photos}", f"--output_dir={out}", "--size=64",
                       "--lr_size=7"], log=lambda m: None) == exit_codes.USAGE


def test_lr_files_are_the_reference_downscale(tmp_path):
    from pulse_jax import degrade, images
    from pulse_jax.align.folder import lr_versions
    crops = np.asarray(face(0, 64))[None]
    lr = lr_versions(crops, 16)
    want = np.clip(np.asarray(degrade.bicubic_downscale(crops / np.float32(255), 4)), 0, 1)
    np.testing.assert_array_equal(lr, want)
    images.save_png(tmp_path / "a.png", lr[0])
    assert images.load_image(tmp_path / "a.png")[0].shape == (16, 16, 3)


@pytest.mark.slow
def test_upsample_align_photo_in_photo_out(tmp_path):
    """``pulse-jax upsample --align --replace_large_faces``: a photo with two faces larger
    than the generator goes in (the reference's demo: make an LR from an HR photo); each face
    is aligned to the shipped model's own framing (the template in its checkpoint), searched
    from the reference's 8x8, and pasted back into a photo of the same size that is unchanged
    away from the faces."""
    from pulse_jax import cli
    photo, _ = scene(0, 8.0, 256, (60, 300))
    (tmp_path / "photos").mkdir()
    Image.fromarray(photo).save(tmp_path / "photos" / "group.png")
    out = tmp_path / "out"
    status = cli.run(["upsample", f"--input_dir={tmp_path / 'photos'}", f"--output_dir={out}",
                      "--align", "--replace_large_faces", "--checkpoint=default",
                      "--config.search.steps=3",
                      "--config.search.chunk_steps=3", "--config.devices=1",
                      "--config.progress=False"])
    assert status in (0, 3)                         # 3: a face may miss eps in 3 steps
    aligned = files.read_jsonl(out / "aligned" / "manifest.jsonl")
    assert [a["template"] for a in aligned] == ["utkface64"] * 2
    assert {a["lr_size"] for a in aligned} == {8}   # 64 / 8: the shipped model's x8
    [rec] = files.read_jsonl(out / "photos" / "manifest.jsonl")
    assert rec["input"] == str(tmp_path / "photos" / "group.png")
    assert [f["face_index"] for f in rec["faces"]] == [0, 1]
    assert all(pathlib.Path(f["hr"]).is_file() and "l2" in f for f in rec["faces"])
    result = np.asarray(Image.open(rec["output"]))
    assert result.shape == photo.shape
    inside = np.zeros(photo.shape[:2], bool)
    for a in aligned:                               # each crop's bounding box in the photo
        q = np.asarray(a["quad"])
        x0, y0 = np.maximum(np.floor(q.min(0)).astype(int) - 1, 0)
        x1, y1 = np.ceil(q.max(0)).astype(int) + 2
        inside[y0:y1, x0:x1] = True
    np.testing.assert_array_equal(result[~inside], photo[~inside])
    assert (result[inside] != photo[inside]).any()  # the faces were replaced


def _fake_results(out: pathlib.Path, colour_of: dict) -> None:
    """A batch manifest in ``out`` as the search would leave it: every aligned LR crop's
    HR result is a flat 64x64 image of its photo's colour (``colour_of[photo name]``)."""
    from pulse_jax import images
    for a in files.read_jsonl(out / "aligned" / "manifest.jsonl"):
        if "error" in a:
            continue
        hr = out / f"{pathlib.Path(a['lr_output']).stem}.png"
        images.save_png(hr, np.broadcast_to(np.float32(colour_of[pathlib.Path(a["input"]).name]),
                                            (64, 64, 3)))
        files.append_jsonl(out / "manifest.jsonl", {"input": a["lr_output"], "output": str(hr),
                                                    "l2": 0.0, "success": True})


def _centre_pixel(photo: np.ndarray, quad) -> np.ndarray:
    x, y = np.rint(quads.unit_to_photo([0.5, 0.5], np.asarray(quad))).astype(int)
    return photo[y, x]


def test_photos_sharing_a_stem_keep_their_own_faces_and_photos(tmp_path):
    """``me.jpg`` and ``me.png`` (in name order): each keeps its own crops (``me_k``,
    ``me-2_k``) and its own pasted photo (``photos/me.png``, ``photos/me-2.png``) with its
    own faces in it."""
    from pulse_jax.align import pipeline
    src, out = tmp_path / "photos", tmp_path / "out"
    src.mkdir()
    a, _ = scene(0, 10.0, 256, (100, 150))
    b, _ = scene(1, 0.0, 240, (150, 250), size=(800, 600))
    Image.fromarray(a).save(src / "me.png")
    Image.fromarray(b).save(src / "me.jpg", quality=95)
    summary = pipeline.align_photos(src, out, 64, FIXED8)
    assert (summary.photos, summary.faces, summary.errors) == (2, 4, 0)
    aligned = files.read_jsonl(out / "aligned" / "manifest.jsonl")
    crops = {pathlib.Path(r["output"]).name: r for r in aligned}
    assert set(crops) == {"me-2_0.png", "me-2_1.png", "me_0.png", "me_1.png"}
    for name, r in crops.items():
        photo = "me.png" if name.startswith("me-2_") else "me.jpg"
        assert pathlib.Path(r["input"]).name == photo and r["photo_name"] == name[:-6]
        assert (out / "aligned" / "lr" / name).is_file()
    assert not np.array_equal(np.asarray(Image.open(out / "aligned" / "me_0.png")),
                              np.asarray(Image.open(out / "aligned" / "me-2_0.png")))

    _fake_results(out, {"me.png": (1, 0, 0), "me.jpg": (0, 0, 1)})
    pasted = pipeline.paste_results(out)
    assert (pasted.photos, pasted.faces, pasted.missing) == (2, 4, 0)
    recs = {pathlib.Path(r["input"]).name: r for r in
            files.read_jsonl(out / "photos" / "manifest.jsonl")}
    assert {k: pathlib.Path(r["output"]).name for k, r in recs.items()} == {
        "me.jpg": "me.png", "me.png": "me-2.png"}
    for photo, own, colour in (("me.png", a, (255, 0, 0)), ("me.jpg", b, (0, 0, 255))):
        result = np.asarray(Image.open(recs[photo]["output"]))
        assert result.shape == own.shape
        for r in aligned:
            if pathlib.Path(r["input"]).name == photo:
                assert tuple(_centre_pixel(result, r["quad"])) == colour, (photo, r["output"])


def test_align_and_paste_write_nothing_outside_their_folder(tmp_path):
    """A list entry ``...png`` (stem ``..``) gives crops ``___k.png`` and ``photos/__.png``."""
    from pulse_jax.align import pipeline
    src, out = tmp_path / "src", tmp_path / "work" / "out"
    src.mkdir()
    photo, _ = scene(0, 0.0, 256, (100, 150))
    Image.fromarray(photo).save(src / "...png", format="PNG")
    (src / "list.txt").write_text("...png\n")
    before = set(tmp_path.rglob("*"))
    pipeline.align_photos(src / "list.txt", out, 64, FIXED8)
    _fake_results(out, {"...png": (0, 1, 0)})
    pipeline.paste_results(out)
    new = set(tmp_path.rglob("*")) - before
    assert [p for p in new if out not in p.parents and p not in (out, out.parent)] == []
    names = sorted(p.name for p in (out / "aligned").glob("*.png"))
    assert names == ["___0.png", "___1.png"]
    assert [p.name for p in (out / "photos").glob("*.png")] == ["__.png"]


def test_align_command_refuses_a_folder_in_use(tmp_path, capsys):
    from pulse_jax import folder_lock
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(scene(0, 0.0, 256, (100, 150))[0]).save(photos / "p.png")
    out = tmp_path / "out"
    out.mkdir()
    with folder_lock.hold(out):
        status = align_main([f"--input_dir={photos}", f"--output_dir={out}", "--size=64",
                             "--lr_size=8", "--template=ffhq", "--checkpoint=default"],
                            log=lambda m: None)
    assert status == exit_codes.BUSY
    assert "in use by another pulse-jax run" in capsys.readouterr().err
    assert not (out / "manifest.jsonl").exists() and not list(out.glob("*.png"))
