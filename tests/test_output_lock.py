"""One run at a time in an output folder (pulse_jax.folder_lock).

flock locks belong to open files, so a lock taken here excludes a run in this same process
as it would another process's: the library tests need no second process. The command-line
tests start real processes: two at once into one folder, and one killed while it held the
folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import fakes
from pulse_jax import batch, cli, exit_codes, files, folder_lock
from pulse_jax.folder_lock import OutputBusyError
from pulse_jax.search import SearchConfig

CFG = SearchConfig(steps=4, chunk_steps=2, restarts=2)


def _run(inputs, out, **kw):
    return batch.run_batch(fakes.tiny_generator(), inputs, out, CFG, devices=1, batch_size=2,
                           progress=False, log=lambda m: None, **kw)


def test_lock_excludes_other_runs_but_not_the_processes_of_one_job(tmp_path):
    d = tmp_path
    with folder_lock.hold(d):
        with pytest.raises(OutputBusyError) as e:
            with folder_lock.hold(d):
                pass
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in str(e.value)
        assert e.value.folder == d and e.value.holders[0]["pid"] == os.getpid()
        with pytest.raises(OutputBusyError):  # a job's process against a one-process run
            with folder_lock.hold(d, 1, 2):
                pass
    with folder_lock.hold(d, 0, 2), folder_lock.hold(d, 1, 2):  # one job: both processes
        for p, n in ((0, 1), (0, 2), (1, 3)):  # another run, another job with either slot
            with pytest.raises(OutputBusyError, match="process 0 of 2"):
                with folder_lock.hold(d, p, n):
                    pass
    with folder_lock.hold(d):  # everything released: free again
        pass
    assert folder_lock.holders(d) == []  # released slots say nothing


def test_stale_lock_files_do_not_block(tmp_path):
    """Lock files left by a dead process (its locks went with it) and garbage in them."""
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 1)
    out.mkdir()
    (out / folder_lock.LOCK_NAME).write_text("garbage")
    (out / f"{folder_lock.LOCK_NAME}.p0").write_text(
        f'{{"pid": 999999999, "host": "{socket.gethostname()}", "started": "x"}}')
    assert folder_lock.holders(out) == []  # that pid does not exist here
    assert _run(inp, out).done == 1


def test_second_run_into_a_folder_is_refused_and_touches_nothing(tmp_path):
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 2)
    out.mkdir()
    leftover = out / ".face00.png.abc123.tmp"  # the holder's in-flight file
    leftover.write_bytes(b"partial")
    with folder_lock.hold(out):
        with pytest.raises(OutputBusyError, match=f"pid {os.getpid()}"):
            _run(inp, out)
    assert leftover.exists() and not (out / "manifest.jsonl").exists()
    assert not list(out.glob("*.png"))
    s = _run(inp, out)
    assert s.done == 2 and len(batch.read_records(out)) == 2


def test_upsample_command_exits_4_when_the_folder_is_in_use(tmp_path, tiny_ckpt, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    fakes.write_faces(inp, 1)
    out.mkdir()
    args = ["upsample", f"--config={fakes.REPO / 'experiments/configs/tiny.py'}",
            f"--checkpoint={tiny_ckpt}", f"--input_dir={inp}", f"--output_dir={out}",
            "--config.progress=False"]
    with folder_lock.hold(out):
        assert cli.run(args) == exit_codes.BUSY
    err = capsys.readouterr().err
    assert f"in use by another pulse-jax run (pid {os.getpid()}" in err and "Traceback" not in err
    assert not (out / "manifest.jsonl").exists()


@pytest.mark.slow
def test_two_commands_at_once_into_one_folder_record_each_face_once(tmp_path, tiny_ckpt):
    """Both start together; one searches, the other is refused (status 4, naming the first's
    pid) instead of searching every face again. Then one killed while it holds the folder
    (its lock files stay, naming it) does not block the next run."""
    n = 4
    fakes.write_faces(tmp_path / "in", n)
    out = tmp_path / "out"
    env = fakes.subprocess_env(devices=1, cache_dir=tmp_path / "jax_cache")
    args = [sys.executable, "-m", "experiments.run", "--config=experiments/configs/tiny.py",
            f"--checkpoint={tiny_ckpt}", f"--input_dir={tmp_path / 'in'}",
            f"--output_dir={out}", "--config.search.steps=100",
            "--config.search.chunk_steps=50"]
    procs = [subprocess.Popen(args, env=env, cwd=fakes.REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    logs = [p.communicate(timeout=600)[1] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(codes)[1] == exit_codes.BUSY and sorted(codes)[0] in (0, 3), (codes, logs)
    winner, loser = (0, 1) if codes[1] == exit_codes.BUSY else (1, 0)
    assert f"pid {procs[winner].pid} on host" in logs[loser], logs[loser]
    assert "Traceback" not in logs[loser]
    recs = files.read_jsonl(out / "manifest.jsonl")
    assert sorted(r["name"] for r in recs) == [f"face{i:02d}" for i in range(n)]

    fakes.write_faces(tmp_path / "in", 2, start=n)  # more work for a run to be killed in
    proc = subprocess.Popen(args, env=env, cwd=fakes.REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    slot = out / f"{folder_lock.LOCK_NAME}.p0"
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if f'"pid": {proc.pid}' in slot.read_text():
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1]
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert f'"pid": {proc.pid}' in slot.read_text()  # a stale lock file of a dead process
    again = fakes.run_python(args[1:], env)  # not blocked; every face once
    assert again.returncode in (0, 3), again.stderr
    recs = files.read_jsonl(out / "manifest.jsonl")
    assert sorted(r["name"] for r in recs) == [f"face{i:02d}" for i in range(n + 2)]
