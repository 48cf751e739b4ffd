"""Many hosts: two processes x two fake CPU devices talking to a coordinator on 127.0.0.1
(``jax.distributed.initialize``) give the same images and l2 as one process on one device.

XLA:CPU's results can depend on how many fake devices the process was started with
(``--xla_force_host_platform_device_count``), independently of how many are used, so the
single-device reference run is started with the same flag as the two processes (2); the
per-device batch shape (``batch_size``) is the same in both.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import fakes
from pulse_jax import batch, files


def _args(ckpt, inp, out, *extra):
    return ["-m", "experiments.run", "--config=experiments/configs/tiny.py",
            f"--checkpoint={ckpt}", f"--input_dir={inp}", f"--output_dir={out}",
            "--config.batch_size=1", *extra]


@pytest.mark.slow
def test_two_processes_two_devices_each_equal_one_device(tmp_path, tiny_ckpt):
    inp = tmp_path / "in"
    fakes.write_faces(inp, 5)
    bad = fakes.write_bad_inputs(inp)["truncated"]
    for p in inp.iterdir():  # keep one bad input only
        if p.name.startswith("bad_") and p != bad:
            p.unlink()
    env = fakes.subprocess_env(devices=2, cache_dir=tmp_path / "jax_cache")

    ref = fakes.run_python(_args(tiny_ckpt, inp, tmp_path / "one", "--config.devices=1"), env)
    assert ref.returncode == 1, ref.stderr  # a bad input

    port = fakes.free_port()
    procs = [subprocess.Popen(
        [sys.executable, *_args(tiny_ckpt, inp, tmp_path / "multi", "--config.devices=0",
                                "--config.distributed=True",
                                f"--config.coordinator_address=127.0.0.1:{port}",
                                "--config.num_processes=2", f"--config.process_id={k}")],
        env=env, cwd=fakes.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(2)]
    outs = []
    for p in procs:
        try:
            outs.append(p.communicate(timeout=600))
        finally:
            p.kill()
    logs = [o[1] for o in outs]
    assert "Traceback" not in "".join(logs), logs
    assert "2 local device(s) x 2 process(es)" in logs[0]
    assert "(all processes): 6 faces: 5 done" in logs[0], logs[0]
    assert "(process 1 of 2)" in logs[1]
    assert procs[0].returncode == 1, logs[0]  # process 0 reports on all faces

    multi = tmp_path / "multi"
    assert sorted(p.name for p in multi.iterdir() if "manifest" in p.name) == ["manifest.jsonl"]
    recs = files.read_jsonl(multi / "manifest.jsonl")
    assert len(recs) == 6 and len({r["name"] for r in recs}) == 6  # each face once
    assert {r["process"] for r in recs} == {0, 1}
    one = {r["name"]: r for r in batch.read_records(tmp_path / "one")}
    for r in recs:
        o = one[r["name"]]
        assert r["face_id"] == o["face_id"] and r["config_hash"] == o["config_hash"]
        if "error" in o:
            assert r["error"] == o["error"]
            continue
        assert (r["l2"], r["restart_l2"], r["restart"]) == (o["l2"], o["restart_l2"],
                                                            o["restart"]), r["name"]
        np.testing.assert_array_equal(fakes.png_ok(multi / f"{r['name']}.png"),
                                      fakes.png_ok(tmp_path / "one" / f"{r['name']}.png"))

    # The same command again: everything is complete, nothing is added.
    again = fakes.run_python(_args(tiny_ckpt, inp, multi, "--config.devices=1"), env)
    assert again.returncode == 1 and "6 of 6 faces already complete" in again.stderr
    assert len(files.read_jsonl(multi / "manifest.jsonl")) == 6


@pytest.mark.slow
def test_a_job_whose_process_is_refused_stops_in_every_process(tmp_path, tiny_ckpt):
    """Process 1's slot of the output folder is held (by this test, standing in for another
    job): process 1 is refused, and process 0, which got its own locks, learns it through
    the coordinator and stops too (status 4 both) instead of searching its share and then
    waiting for a process that has left. Nothing is written."""
    from pulse_jax import exit_codes, folder_lock
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 2)
    out.mkdir()
    env = fakes.subprocess_env(devices=1, cache_dir=tmp_path / "jax_cache")
    port = fakes.free_port()
    with folder_lock.hold(out, 1, 2):
        procs = [subprocess.Popen(
            [sys.executable, *_args(tiny_ckpt, inp, out, "--config.distributed=True",
                                    f"--config.coordinator_address=127.0.0.1:{port}",
                                    "--config.num_processes=2", f"--config.process_id={k}")],
            env=env, cwd=fakes.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for k in range(2)]
        logs = []
        for p in procs:
            try:
                logs.append(p.communicate(timeout=300)[1])
            finally:
                p.kill()
    assert [p.returncode for p in procs] == [exit_codes.BUSY] * 2, logs
    assert "process(es) [1] of this job were refused" in logs[0], logs[0]
    assert f"pid {os.getpid()} on host" in logs[1] and "process 1 of 2" in logs[1], logs[1]
    assert "Traceback" not in "".join(logs)
    assert not list(out.glob("manifest*")) and not list(out.glob("*.png"))


@pytest.mark.slow
def test_two_processes_align_photos_once(tmp_path):
    """``upsample --align`` over two processes: process 0 aligns and pastes, so the crops of
    ``me.jpg`` and ``me.png`` and their photos are written and recorded once each, and every
    face is searched once (by one process or the other)."""
    from PIL import Image
    from test_align import scene
    photos, out = tmp_path / "photos", tmp_path / "out"
    photos.mkdir()
    Image.fromarray(scene(0, 8.0, 256, (60, 300))[0]).save(photos / "me.png")
    Image.fromarray(scene(1, 0.0, 240, (150, 250), (800, 600))[0]).save(photos / "me.jpg",
                                                                       quality=95)
    env = fakes.subprocess_env(devices=1, cache_dir=tmp_path / "jax_cache")
    port = fakes.free_port()
    procs = [subprocess.Popen(
        [sys.executable, "-m", "pulse_jax.cli", "upsample", f"--input_dir={photos}",
         f"--output_dir={out}", "--align", "--replace_large_faces", "--checkpoint=default",
         "--config.search.steps=2",
         "--config.search.chunk_steps=2", "--config.progress=False",
         "--config.distributed=True", f"--config.coordinator_address=127.0.0.1:{port}",
         "--config.num_processes=2", f"--config.process_id={k}"],
        env=env, cwd=fakes.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for k in range(2)]
    logs = []
    for p in procs:
        try:
            logs.append(p.communicate(timeout=600)[1])
        finally:
            p.kill()
    assert all(p.returncode in (0, 3) for p in procs), logs
    aligned = files.read_jsonl(out / "aligned" / "manifest.jsonl")
    crops = sorted(pathlib.Path(a["output"]).name for a in aligned)
    assert crops == ["me-2_0.png", "me-2_1.png", "me_0.png", "me_1.png"], crops
    recs = files.read_jsonl(out / "manifest.jsonl")
    assert sorted(r["name"] for r in recs) == [c[:-4] for c in crops]
    assert {r["process"] for r in recs} == {0, 1}
    pasted = files.read_jsonl(out / "photos" / "manifest.jsonl")
    assert sorted(pathlib.Path(r["output"]).name for r in pasted) == ["me-2.png", "me.png"]
    assert all(len(r["faces"]) == 2 and all("hr" in f for f in r["faces"]) for r in pasted)
    assert "process 0 pastes" in logs[1]
