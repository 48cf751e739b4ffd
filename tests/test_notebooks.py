"""The Colab notebooks in notebooks/, executed end to end on the CPU, small and offline.

Why nbclient and not nbmake: nbmake (a pytest plugin) runs a notebook and fails on an error,
but it collects notebooks as test items of its own, so a test cannot set the environment
of one run or look at what the run produced. nbclient is the library nbmake itself runs on:
here the test chooses the kernel, passes the small settings through the environment
(``PULSE_NB_*``), executes the notebook as committed, and then checks its results: the images
decode, the l2 values and success flags are saved and printed, no cell output is an error.

The kernel: a kernelspec written into a temporary ``JUPYTER_PATH`` that starts *this*
interpreter (``sys.executable -m ipykernel_launcher``), so the notebook runs in the same venv as
pytest, offline, without ``ipykernel install`` touching the user's Jupyter folders. Its runtime
and IPython folders are temporary too. Proxies that point at a closed port make any attempt
to reach the network fail at once.

Notebooks are committed without outputs (``notebooks/README.md`` says why); the first test
keeps them that way.
"""

from __future__ import annotations

import importlib.util
import json
import pathlib
import sys

import imageio.v3 as iio
import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from pulse_jax import images

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "pulse-jax-test"
STEPS, RESTARTS, FRAME_EVERY = 4, 2, 2
SMALL = {
    "PULSE_NB_MODEL": "default", "PULSE_NB_STEPS": str(STEPS),
    "PULSE_NB_RESTARTS": str(RESTARTS), "PULSE_NB_FRAME_EVERY": str(FRAME_EVERY),
    "PULSE_NB_USE_DRIVE": "0",
}


def test_notebooks_are_committed_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, (
                    f"{path.name}: cell {cell.get('id')} has outputs; clear them before committing")


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A kernelspec running this interpreter, the small settings, and no network."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "pulse-jax test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    for name, value in SMALL.items():
        monkeypatch.setenv(name, value)
    return tmp_path


def _run(name: str, out: pathlib.Path, monkeypatch) -> nbformat.NotebookNode:
    """Executes notebooks/{name}.ipynb with its outputs going to ``out``; returns it executed."""
    monkeypatch.setenv("PULSE_NB_OUTPUT_DIR", str(out))
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, kernel_name=KERNEL, timeout=300,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.output_type != "error", f"{name}: cell {cell.id}: {output.get('evalue')}"
    return nb


def _text(nb: nbformat.NotebookNode, cell_id: str) -> str:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


def _shown(nb: nbformat.NotebookNode, cell_id: str, mime: str) -> int:
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    return sum(mime in o.get("data", {}) for o in cell.outputs)


@pytest.mark.slow
def test_quickstart_notebook(kernel_env, monkeypatch):
    """One face on two (CPU) devices: its restarts are spread over both, as on a TPU."""
    monkeypatch.setenv("PULSE_NB_EXAMPLES", "1")
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    out = kernel_env / "quickstart"
    nb = _run("quickstart", out, monkeypatch)

    saved = json.loads((out / "results.json").read_text())
    assert saved["model"] == "default" and saved["steps"] == STEPS
    faces = saved["faces"]
    assert [f["name"] for f in faces] == ["face_00"]
    printed = _text(nb, "results")
    for face in faces:
        assert np.isfinite(face["l2"]) and len(face["restart_l2"]) == RESTARTS
        assert face["success"] == (face["l2"] <= saved["eps"])
        assert f"{face['name']}: l2 {face['l2']:.5f}" in printed
        assert face["variability"] > 0 and f"variability {face['variability']:.3f}" in printed
        hr, _ = images.load_image(out / f"{face['name']}.png")
        assert hr.shape == (64, 64, 3)
        assert iio.imread(out / f"{face['name']}_sheet.png").ndim == 3
    assert _shown(nb, "results", "image/png") == len(faces)

    movie = iio.imread(out / "search.gif", index=None)
    assert movie.shape[0] == STEPS // FRAME_EVERY
    assert _shown(nb, "movie", "image/gif") == 1
    assert "2 local device(s)" in _text(nb, "devices")
    assert "restarts spread over the devices" in _text(nb, "search")
    # Off Colab the app cell builds the app (with the app extra) and launches nothing.
    has_gradio = importlib.util.find_spec("gradio") is not None
    assert ("the app builds" if has_gradio else "needs gradio") in _text(nb, "app")


@pytest.mark.slow
def test_batch_notebook(kernel_env, monkeypatch):
    """The six bundled faces, 2 per call, then the same call again: all skipped."""
    monkeypatch.setenv("PULSE_NB_BATCH_SIZE", "2")
    out = kernel_env / "batch"
    nb = _run("batch", out, monkeypatch)

    records = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    examples = sorted(p.stem for p in (NOTEBOOKS.parent / "examples").glob("*.png"))
    assert sorted(r["name"] for r in records) == examples  # each once: the rerun added nothing
    for r in records:
        assert np.isfinite(r["l2"]) and r["success"] == (r["l2"] <= r["eps"])
        assert images.load_image(r["output"])[0].shape == (64, 64, 3)
        assert iio.imread(r["sheet"]).ndim == 3
        assert r["variability"] > 0 and iio.imread(r["variability_output"]).shape[1] > 128
    n = len(examples)
    assert f"{n} faces: {n} done, 0 skipped" in _text(nb, "run")
    assert f"skipped {n} of {n} face(s), searched 0" in _text(nb, "resume")
    gallery = iio.imread(out / "gallery.png")
    assert gallery.ndim == 3 and gallery.shape[0] >= 64
    assert _shown(nb, "gallery", "image/png") == 1
    assert _shown(nb, "variability", "image/png") == 1
    assert f"variability {records[0]['variability']:.3f}" in _text(nb, "variability")
