"""pulse_jax.evaluate: the identity measure, labels, per-group figures and the evaluation
run, on committable faces (the shipped model's own samples)."""

import json
import pathlib

import jax
import numpy as np
import pytest
from PIL import Image, ImageFilter

import pulse_jax
from pulse_jax import cli, evaluate, images
from pulse_jax.evaluate import labels, summary

# Our own file and command-line code: the newest set skips it (setup.cfg, marker io).
pytestmark = pytest.mark.io

pytest.importorskip("dlib")
pytest.importorskip("dm_pix")

DATA = pathlib.Path(__file__).parent / "data" / "align"


def _sample(k: int) -> np.ndarray:
    return np.asarray(Image.open(DATA / f"utkface64_sample_{k}.png").convert("RGB"))


@pytest.fixture(scope="module")
def shipped():
    return pulse_jax.default_generator()


@pytest.fixture(scope="module")
def own_faces(shipped):
    """Eight faces the shipped model drew (uint8), the recogniser finds a face in each."""
    x = images.to_uint8(np.asarray(shipped.sample(jax.random.PRNGKey(3), 12)), "round")
    found = []
    for im in x:
        try:
            evaluate.face_descriptor(im)
            found.append(im)
        except evaluate.FaceNotFoundError:
            pass
    assert len(found) >= 8, f"the recogniser found {len(found)} of 12 of the model's faces"
    return found[:8]


def test_identity_of_an_image_with_itself_is_zero():
    a = _sample(0)
    assert evaluate.identity_distance(a, a) == 0.0
    assert evaluate.identity_distance(a, a.astype(np.float32) / 255) == 0.0  # floats round


def test_a_slight_blur_is_far_closer_than_another_person(own_faces):
    faces = [_sample(k) for k in range(3)] + list(own_faces)
    blurred = [np.asarray(Image.fromarray(f).filter(ImageFilter.GaussianBlur(0.7)))
               for f in faces]
    same = [evaluate.identity_distance(f, b) for f, b in zip(faces, blurred)]
    descs = [evaluate.face_descriptor(f) for f in faces]
    other = [float(np.linalg.norm(descs[i] - descs[j]))
             for i in range(len(faces)) for j in range(i + 1, len(faces))]
    assert max(same) < 0.3 < np.median(other), (max(same), np.median(other))
    assert max(same) < min(other)
    assert all(d < evaluate.SAME_IDENTITY for d in same)


def test_no_face_is_an_error_naming_the_image():
    blank = np.full((64, 64, 3), 0.5, np.float32)
    with pytest.raises(evaluate.FaceNotFoundError, match="image b: no face found in the 64x64"):
        evaluate.identity_distance(_sample(0), blank)
    with pytest.raises(ValueError, match=r"RGB image \[H, W, 3\]"):
        evaluate.identity_distance(np.zeros((64, 64)), _sample(0))


def test_utkface_and_csv_labels(tmp_path):
    assert labels.utkface_labels("9_1_2_20170110183630709.jpg") == {
        "age_band": "0-9", "gender": "female", "race": "Asian"}
    assert labels.utkface_labels("90_0_4_2017.jpg.png") == {
        "age_band": "80+", "gender": "male", "race": "Others"}
    assert labels.utkface_labels("35_0_20170117.jpg") == {"age_band": "20-39", "gender": "male"}
    with pytest.raises(ValueError, match="not a UTKFace name"):
        labels.utkface_labels("face.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("# name,labels\na.png,group=x,light=low\n\nb,group=y\n")
    of = labels.labeller(str(csv))
    assert of("a.png") == {"group": "x", "light": "low"} and of("b.jpg") == {"group": "y"}
    assert of("c.png") == {}
    csv.write_text("a.png,group\n")
    with pytest.raises(ValueError, match=r"labels.csv:1: 'group' is not key=value"):
        labels.read_labels_csv(csv)


def _records(rng, n=40):
    out = []
    for i in range(n):
        d = None if i % 7 == 0 else float(rng.uniform(0.3, 0.9))
        out.append({"name": f"f{i}", "group": {"g": "ab"[i % 2], "h": "xyz"[i % 3]},
                    "success": bool(rng.uniform() < 0.8), "identity_distance": d,
                    "baselines": {"bicubic": {"identity_distance": None if i % 3 else 0.7}}})
    out.append({"name": "bad", "group": {"g": "a"}, "error": "cannot read"})
    return out


def test_group_figures_equal_the_records():
    recs = _records(np.random.default_rng(0))
    s = summary.summarize(recs)
    good = [r for r in recs if not r.get("error")]
    assert s["errors"] == 1 and s["overall"]["n"] == len(good)
    for label in ("g", "h"):
        groups = s["groups"][label]
        assert sum(g["n"] for g in groups.values()) == len(good)
        for value, g in groups.items():
            mine = [r for r in good if r["group"][label] == value]
            d = [r["identity_distance"] for r in mine if r["identity_distance"] is not None]
            assert g["n"] == len(mine) and g["identity_measured"] == len(d)
            assert g["identity_missing"] == len(mine) - len(d)
            assert g["success_rate"] == pytest.approx(np.mean([r["success"] for r in mine]))
            assert g["mean_identity_distance"] == pytest.approx(np.mean(d))
            assert g["same_identity_rate"] == pytest.approx(np.mean(np.array(d) < 0.6))
            lo, hi = g["mean_identity_distance_ci"]
            assert lo <= g["mean_identity_distance"] <= hi and lo < hi
            b = [r["baselines"]["bicubic"]["identity_distance"] for r in mine]
            assert g["baselines"]["bicubic"]["identity_measured"] == sum(x is not None for x in b)
    gap = s["gaps"]["h"]["mean_identity_distance"]
    means = {v: g["mean_identity_distance"] for v, g in s["groups"]["h"].items()}
    assert gap["gap"] == pytest.approx(max(means.values()) - min(means.values()))
    assert means[gap["low"]] == min(means.values())
    assert summary.summarize(recs) == s  # the bootstrap is seeded


def test_bootstrap_interval():
    assert summary.bootstrap_interval([]) is None
    assert summary.bootstrap_interval([0.4]) == [0.4, 0.4]
    x = np.random.default_rng(1).normal(0.5, 0.1, 400)
    lo, hi = summary.bootstrap_interval(x)
    half = 1.96 * x.std() / np.sqrt(x.size)   # the normal interval it should approach
    assert lo == pytest.approx(x.mean() - half, abs=0.004)
    assert hi == pytest.approx(x.mean() + half, abs=0.004)


@pytest.mark.slow
def test_evaluate_command_writes_records_summary_and_report(own_faces, tmp_path):
    truth = tmp_path / "truth"
    truth.mkdir()
    for i, f in enumerate(own_faces[:6]):
        images.save_png(truth / f"own{i}.png", f)
    (tmp_path / "labels.csv").write_text(
        "".join(f"own{i}.png,half={'ab'[i % 2]},third={'xyz'[i % 3]}\n" for i in range(6)))
    out = tmp_path / "out"
    args = ["evaluate", f"--truth_dir={truth}", f"--output_dir={out}", "--checkpoint=default",
            f"--labels={tmp_path / 'labels.csv'}", "--config.search.restarts=2",
            "--config.search.steps=6", "--config.batch_size=4", "--config.progress=False"]
    assert cli.run(args) == 0
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    figs = json.loads((out / "summary.json").read_text())
    report = (out / "report.md").read_text()
    assert sorted(r["name"] for r in recs) == [f"own{i}" for i in range(6)]
    for r in recs:
        hr = images.load_image(out / r["output"])[0]
        truth_im = images.load_image(r["truth"])[0]
        if r["identity_distance"] is None:
            assert r["identity_error"]
            continue
        assert evaluate.identity_distance(hr, truth_im) == pytest.approx(
            r["identity_distance"], abs=1e-9)
        assert r["same_identity"] == (r["identity_distance"] < 0.6)
        for b in ("bicubic", "nearest"):
            assert (out / r["baselines"][b]["output"]).is_file()
        assert r["variability"] > 0 and (out / r["variability_output"]).is_file()
        assert r["restart_identity_distance"] is None or r["restart_identity_distance"] >= 0
    for label, values in (("half", "ab"), ("third", "xyz")):
        assert sum(figs["groups"][label][v]["n"] for v in values) == figs["overall"]["n"] == 6
        assert f"## By {label}" in report and f"plots/groups_{label}.png" in report
        assert (out / "plots" / f"groups_{label}.png").is_file()
        for v in values:
            assert f"| {v} |" in report
    assert (out / "plots" / "identity_histogram.png").is_file()
    # A rerun resumes (nothing left to do); other settings are refused.
    assert cli.run(args) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 6
    assert cli.run(args[:-2] + ["--config.search.steps=7", "--config.progress=False"]) == 2


def test_evaluate_usage_errors(tmp_path, capsys):
    assert cli.run(["evaluate", f"--output_dir={tmp_path}"]) == 2
    assert "needs --truth_dir and --output_dir" in capsys.readouterr().err
    bad = tmp_path / "labels.csv"
    bad.write_text("a.png,oops\n")
    assert cli.run(["evaluate", f"--truth_dir={tmp_path}", f"--output_dir={tmp_path}/o",
                    f"--labels={bad}"]) == 2
    assert "is not key=value" in capsys.readouterr().err


def test_chance_level_is_the_distance_between_different_truths():
    rng = np.random.default_rng(2)
    descs = rng.normal(0, 0.06, (5, 128))
    recs = [{"name": f"f{i}", "group": {"g": "a"}, "success": True, "identity_distance": 0.5,
             "truth_descriptor": list(d)} for i, d in enumerate(descs)]
    recs.append({"name": "x", "group": {"g": "a"}, "success": True, "identity_distance": None,
                 "truth_descriptor": None})
    pairs = [np.linalg.norm(descs[i] - descs[j]) for i in range(5) for j in range(i + 1, 5)]
    g = summary.summarize(recs)["groups"]["g"]["a"]
    assert g["chance_identity_distance"] == pytest.approx(np.mean(pairs))
    assert g["chance_same_identity_rate"] == pytest.approx(np.mean(np.array(pairs) < 0.6))
    one = summary.chance_figures(recs[:1])
    assert one == {"chance_identity_distance": None, "chance_same_identity_rate": None}
