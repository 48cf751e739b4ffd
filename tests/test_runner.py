"""The command line: ``python -m pulse_jax.cli`` (the ``pulse-jax`` script) and
``python -m experiments.run``, run as child processes like a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import fakes
from pulse_jax import batch, files

DATA = fakes.REPO / "tests" / "data"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return fakes.subprocess_env(cache_dir=tmp_path_factory.mktemp("jax_cache"))


def _cli(args, env, **kw):
    return fakes.run_python(["-m", "pulse_jax.cli", *args], env, **kw)


def _no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr + p.stdout, p.stderr


@pytest.fixture(scope="module")
def converted_home(tmp_path_factory, env):
    """`pulse-jax convert` of the small reference generator into a cache home (128x128)."""
    home = tmp_path_factory.mktemp("home")
    e = dict(env, PULSE_JAX_HOME=str(home))
    p = _cli(["convert", f"--synthesis={DATA / 'small_seed0_synthesis.pt'}",
              f"--gaussian_fit={DATA / 'small_seed0_gaussian_fit_legacy.pt'}"], e)
    assert p.returncode == 0, p.stderr
    ckpt = home / "checkpoints" / "ffhq1024"
    assert (ckpt / "manifest.json").is_file()
    info = _cli(["info", str(ckpt)], e)
    assert info.returncode == 0, info.stderr
    manifest = json.loads(info.stdout)
    assert manifest["config"]["resolution"] == 128
    assert {s["role"] for s in manifest["sources"]} == {"synthesis", "gaussian_fit"}
    assert all(len(s["sha256"]) == 64 for s in manifest["sources"])
    # Converting onto an existing checkpoint needs --overwrite.
    again = _cli(["convert", f"--synthesis={DATA / 'small_seed0_synthesis.pt'}"], e)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    return home


def test_readme_main_job(tmp_path, env, converted_home):
    """`pulse-jax upsample --input_dir=input --output_dir=runs` with the cached checkpoint."""
    fakes.write_faces(tmp_path / "input", 2, size=16)
    e = dict(env, PULSE_JAX_HOME=str(converted_home))
    p = _cli(["upsample", "--input_dir=input", "--output_dir=runs"], e, cwd=tmp_path)
    _no_traceback(p)
    recs = batch.read_records(tmp_path / "runs")
    assert len(recs) == 2 and all(r["steps"] == 100 and r["factor"] == 8 for r in recs)
    assert p.returncode == (0 if all(r["success"] for r in recs) else 3), p.stderr
    for r in recs:
        assert fakes.png_ok(tmp_path / r["output"]).shape == (128, 128, 3)
    assert "2 done" in p.stderr and "mean l2" in p.stderr


@pytest.mark.slow
def test_config_file_with_overrides(tmp_path, env, tiny_ckpt):
    fakes.write_faces(tmp_path / "in", 2)
    args = ["--config=experiments/configs/fast.py", f"--checkpoint={tiny_ckpt}",
            f"--input_dir={tmp_path / 'in'}", f"--config.output_dir={tmp_path / 'out'}",
            "--config.search.steps=3", "--config.search.chunk_steps=3",
            "--config.search.restarts=3", "--config.seed=5", "--config.devices=1"]
    shown = fakes.run_python(["-m", "experiments.run", *args, "--print_config"], env)
    assert shown.returncode == 0, shown.stderr
    cfg = json.loads(shown.stdout)
    assert cfg["search"]["steps"] == 3 and cfg["search"]["restarts"] == 3
    assert cfg["checkpoint"] == str(tiny_ckpt) and cfg["save_contact_sheet"] is True
    assert cfg["search"]["eps"] == 2e-3 and cfg["search"]["lr_schedule"] == "linear1cycledrop"

    p = fakes.run_python(["-m", "experiments.run", *args], env)
    _no_traceback(p)
    assert p.returncode == 3, p.stderr  # 3 steps on a random generator: eps is missed
    recs = batch.read_records(tmp_path / "out")
    assert len(recs) == 2
    for r in recs:
        assert (r["steps"], r["restarts"], r["seed"], len(r["restart_l2"])) == (3, 3, 5, 3)
        assert fakes.png_ok(tmp_path / "out" / f"{r['name']}_sheet.png").ndim == 3
        assert fakes.png_ok(tmp_path / "out" / f"{r['name']}_lr.png").shape == (8, 8, 3)


def test_missing_weights_explains_and_exits_2(tmp_path, env):
    fakes.write_faces(tmp_path / "input", 1)
    e = dict(env, PULSE_JAX_HOME=str(tmp_path / "empty_home"))
    p = _cli(["upsample", "--input_dir=input", "--checkpoint=ffhq1024"], e, cwd=tmp_path)
    assert p.returncode == 2
    _no_traceback(p)
    for needle in ("no generator checkpoint", str(tmp_path / "empty_home"), "pulse-jax convert",
                   "synthesis.pt", "gaussian_fit.pt", "karras2019stylegan-ffhq-1024x1024.pkl"):
        assert needle in p.stderr, needle
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_no_checkpoint_falls_back_to_the_shipped_model(tmp_path, env, tiny_ckpt):
    """Without --checkpoint and without FFHQ in the cache, the shipped model is used; if it
    is missing too, the instructions are printed and the status is 2."""
    fakes.write_faces(tmp_path / "input", 1)
    e = dict(env, PULSE_JAX_HOME=str(tmp_path / "empty_home"),
             PULSE_JAX_DEFAULT_CHECKPOINT=str(tiny_ckpt))
    p = _cli(["upsample", "--input_dir=input", "--config=experiments/configs/tiny.py"], e,
             cwd=tmp_path)
    _no_traceback(p)
    assert p.returncode in (0, 3), p.stderr
    assert "using the small offline model" in p.stderr and str(tiny_ckpt) in p.stderr
    assert len(files.read_jsonl(tmp_path / "runs_tiny" / "manifest.jsonl")) == 1
    e["PULSE_JAX_DEFAULT_CHECKPOINT"] = str(tmp_path / "nowhere")
    p = _cli(["upsample", "--input_dir=input", "--output_dir=runs2"], e, cwd=tmp_path)
    assert p.returncode == 2 and "shipped offline model is missing" in p.stderr
    _no_traceback(p)


@pytest.mark.parametrize("args, needle", [
    (["--config.search.nosuchfield=1"], "nosuchfield"),
    (["--config.search.steps=abc"], "abc"),
    (["--config.search.opt_name=rmsprop"], "rmsprop"),
    (["--config=does_not_exist.py"], "does_not_exist.py"),
    (["--input_dir=/nonexistent/faces"], "/nonexistent/faces"),
    (["--checkpoint=/nonexistent/ckpt"], "/nonexistent/ckpt"),
    (["stray_argument"], "stray_argument"),
])
def test_usage_errors_exit_2(tmp_path, tiny_ckpt, capsys, args, needle):
    """In this process (``cli.run``, what ``main`` exits with: an exception other than a
    usage error would propagate and fail here); the next test runs one in a child process."""
    from pulse_jax import cli
    fakes.write_faces(tmp_path / "in", 1)
    base = [f"--checkpoint={tiny_ckpt}", f"--input_dir={tmp_path / 'in'}",
            f"--output_dir={tmp_path / 'out'}"]
    status = cli.run(["upsample", *base, *args])
    err = capsys.readouterr().err
    assert status == 2, (status, err)
    assert "Traceback" not in err
    assert needle in err
    assert not (tmp_path / "out").exists()


def test_usage_error_exits_2_in_a_child_process(tmp_path, env, tiny_ckpt):
    fakes.write_faces(tmp_path / "in", 1)
    p = _cli(["upsample", f"--checkpoint={tiny_ckpt}", f"--input_dir={tmp_path / 'in'}",
              f"--output_dir={tmp_path / 'out'}", "--config.search.nosuchfield=1"], env)
    assert p.returncode == 2, (p.returncode, p.stderr)
    _no_traceback(p)
    assert "nosuchfield" in p.stderr


def test_unknown_command_and_help(env):
    p = _cli(["frobnicate"], env)
    assert p.returncode == 2 and "unknown command" in p.stderr
    p = _cli(["--help"], env)
    assert p.returncode == 0 and "upsample" in p.stdout and "convert" in p.stdout


def test_version(env):
    import importlib.metadata as md
    import jax
    p = _cli(["--version"], env)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith(f"pulse-jax {md.version('pulse-jax')} (jax {jax.__version__},")


@pytest.mark.slow
def test_kill_mid_batch_then_resume(tmp_path, env, tiny_ckpt):
    """SIGKILL after some faces: the rerun completes the batch; each face recorded once."""
    n = 6
    fakes.write_faces(tmp_path / "in", n)
    out = tmp_path / "out"
    args = ["-m", "experiments.run", "--config=experiments/configs/tiny.py",
            f"--checkpoint={tiny_ckpt}", f"--input_dir={tmp_path / 'in'}",
            f"--output_dir={out}", "--config.search.steps=200", "--config.search.chunk_steps=50",
            "--config.save_lr=True"]
    proc = subprocess.Popen([sys.executable, *args], env=env, cwd=fakes.REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    manifest = out / "manifest.jsonl"
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(files.read_jsonl(manifest)) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    first = files.read_jsonl(manifest)
    assert 2 <= len(first) < n, len(first)
    # What a kill at the worst moment leaves: half a manifest line and a temporary file.
    with open(manifest, "ab") as f:
        f.write(b'{"input":"half a line')
    (out / ".face05.png.k1ll3d.tmp").write_bytes(b"\x89PNG partial")

    p = fakes.run_python(args, env)
    _no_traceback(p)
    assert f"{len(first)} of {n} faces already complete" in p.stderr
    recs = files.read_jsonl(manifest)
    assert p.returncode == (0 if all(r["success"] for r in recs) else 3), p.stderr
    names = [r["name"] for r in recs]
    assert sorted(names) == [f"face{i:02d}" for i in range(n)], names  # each exactly once
    assert recs[: len(first)] == first
    for r in recs:
        assert fakes.png_ok(r["output"]).shape == (32, 32, 3)
        assert fakes.png_ok(r["lr_output"]).shape == (8, 8, 3)
    assert not [q.name for q in out.iterdir() if q.name.endswith(".tmp")]
    assert manifest.read_bytes().endswith(b"\n")


def test_convert_computes_gaussian_fit_from_mapping(tmp_path, env):
    out = tmp_path / "ckpt"
    p = _cli(["convert", f"--synthesis={DATA / 'small_seed0_synthesis.pt'}",
              f"--mapping={DATA / 'small_seed0_mapping.pt'}", "--fit_samples=2000",
              f"--output={out}"], env)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["has_gaussian_fit"] and m["has_mapping"]
    assert m["gaussian_fit"] == {"computed": True, "num_samples": 2000, "seed": 0}
    assert [s["role"] for s in m["sources"]] == ["synthesis", "mapping"]
    # No fit and no mapping: a clear error.
    p = _cli(["convert", f"--synthesis={DATA / 'small_seed0_synthesis.pt'}",
              f"--output={tmp_path / 'nofit'}"], env)
    assert p.returncode == 2 and "--gaussian_fit" in p.stderr
    _no_traceback(p)
    p = _cli(["convert", "--synthesis=/nonexistent/synthesis.pt",
              f"--output={tmp_path / 'x'}"], env)
    assert p.returncode == 2 and "/nonexistent/synthesis.pt" in p.stderr
    _no_traceback(p)


def test_convert_nvidia_pickle(tmp_path, env):
    """`pulse-jax convert --nvidia=...` on a small pickle with the real file's structure
    (written by the NVIDIA importer's own test helper), fit computed from the mapping."""
    from test_nvidia_pickle import write_pickle  # a failure here must fail, not skip
    pkl, _ = write_pickle(tmp_path / "karras_small.pkl", tmp_path / "MARKER")
    out = tmp_path / "ckpt"
    p = _cli(["convert", f"--nvidia={pkl}", "--fit_samples=2000", f"--output={out}"], env)
    assert p.returncode == 0, p.stderr
    assert not (tmp_path / "MARKER").exists()  # nothing from the pickle ran
    m = json.loads((out / "manifest.json").read_text())
    assert m["has_gaussian_fit"] and [s["role"] for s in m["sources"]] == ["nvidia_pickle"]


def test_convert_nvidia_pickle_with_pulse_gaussian_fit(tmp_path, env):
    """`--nvidia` with `--gaussian_fit=gaussian_fit.pt`: the file's fit is stored as it is
    (no fit computed); a file that is not a fit is refused, named, with exit status 2."""
    import numpy as np
    import pulse_jax
    from pulse_jax import weights
    from test_nvidia_pickle import write_pickle
    pkl, _ = write_pickle(tmp_path / "karras_small.pkl", tmp_path / "MARKER")
    fit_file = DATA / "small_seed0_gaussian_fit_legacy.pt"
    out = tmp_path / "ckpt"
    p = _cli(["convert", f"--nvidia={pkl}", f"--gaussian_fit={fit_file}", f"--output={out}"],
             env)
    assert p.returncode == 0, p.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert [s["role"] for s in m["sources"]] == ["nvidia_pickle", "gaussian_fit"]
    assert m["has_gaussian_fit"] and "gaussian_fit" not in m  # read, not computed
    want = weights.read_gaussian_fit(fit_file, 512)
    got = pulse_jax.load_generator(out).gaussian_fit
    for k in ("mean", "std"):
        np.testing.assert_array_equal(np.asarray(got[k]), want[k])
    not_a_fit = DATA / "small_seed0_synthesis.pt"
    p = _cli(["convert", f"--nvidia={pkl}", f"--gaussian_fit={not_a_fit}",
              f"--output={tmp_path / 'bad'}"], env)
    assert p.returncode == 2 and str(not_a_fit) in p.stderr, p.stderr
    assert "'mean' and 'std'" in p.stderr
    _no_traceback(p)
    assert not (tmp_path / "bad").exists()
