"""A non-editable install, as Colab's ``pip install git+...`` makes one: the package alone,
without the source checkout, must carry the shipped model and run the README's main job."""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

import fakes
from pulse_jax import batch

# What a build of pulse-jax reads from the checkout (setup.cfg's long_description is README).
SOURCES = ("pyproject.toml", "setup.cfg", "README.md", "pulse_jax")


def _install_to(target: pathlib.Path, tmp: pathlib.Path) -> None:
    """``pip install --target`` of a copy of the sources, offline: no index, no build
    isolation (setuptools and wheel come from this environment), no dependencies.

    A copy, so that the build's ``build/`` and ``*.egg-info`` folders never land in the
    checkout that other tests are reading.
    """
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        if (fakes.REPO / name).is_dir():
            shutil.copytree(fakes.REPO / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(fakes.REPO / name, src / name)
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                        "--no-build-isolation", "--target", str(target), str(src)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.mark.slow
def test_non_editable_install_runs_the_main_job_offline(tmp_path):
    """Installed into a folder of its own and run from another one, with only that folder
    on PYTHONPATH: pulse_jax comes from the installed copy, and the upsample job falls back
    to the model shipped inside it (no FFHQ in an empty cache) and writes 64x64 faces."""
    site = tmp_path / "site"
    _install_to(site, tmp_path)
    shipped = site / "pulse_jax" / "checkpoints" / "utkface64"
    assert (shipped / "manifest.json").is_file() and (shipped / "arrays.npz").is_file()

    env = fakes.subprocess_env()
    env["PYTHONPATH"] = str(site)            # the installed copy; not the checkout
    env["PULSE_JAX_HOME"] = str(tmp_path / "empty_home")
    env.pop("PULSE_JAX_DEFAULT_CHECKPOINT", None)
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()

    where = subprocess.run(
        [sys.executable, "-c", "import pulse_jax, pulse_jax.weights as w; "
         "print(pulse_jax.__file__); print(w.default_checkpoint_path())"],
        env=env, cwd=run_dir, capture_output=True, text=True, timeout=300)
    assert where.returncode == 0, where.stderr
    module, ckpt = where.stdout.split()
    assert pathlib.Path(module) == site / "pulse_jax" / "__init__.py"
    assert pathlib.Path(ckpt) == shipped

    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-m", "pulse_jax.cli", "upsample",
         f"--input_dir={fakes.REPO / 'examples'}", f"--output_dir={out}",
         "--config.search.steps=3", "--config.search.restarts=1"],
        env=env, cwd=run_dir, capture_output=True, text=True, timeout=600)
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode in (0, 3), p.stderr       # 3: some face missed eps in 3 steps
    assert "using the small offline model" in p.stderr and str(shipped) in p.stderr
    faces = sorted((fakes.REPO / "examples").glob("*.png"))
    recs = batch.read_records(out)
    assert len(recs) == len(faces) and not any("error" in r for r in recs)
    for r in recs:
        assert r["steps"] == 3 and r["factor"] == 8
        assert fakes.png_ok(out / pathlib.Path(r["output"]).name).shape == (64, 64, 3)
