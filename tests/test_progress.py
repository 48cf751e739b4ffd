"""The progress bar: whole faces in the count, and a time left that leaves compilation out."""

import re
import time

import numpy as np

from pulse_jax.batch.progress import FaceBar
from pulse_jax.search import Progress


def _report(step, steps=4, faces=(0, 2)):
    return Progress(step, steps, faces, np.full((2, 1), 0.01), np.full((2, 1), 1.0),
                    lambda: None)


def _last_line(err: str) -> str:
    return [x for x in re.split(r"[\r\n]", err) if x.strip()][-1]


def test_count_shows_whole_faces_and_eta_excludes_compilation(capfd, monkeypatch):
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    bar = FaceBar(3, True, "PULSE")
    bar.faces_done(1)                       # one face written (say, resumed work)
    bar.chunk_started()
    time.sleep(1.0)                         # "compilation" before the first report
    bar.step(_report(1), 2)
    time.sleep(0.2)
    bar.step(_report(2), 2)                 # half of the two faces in flight are done
    line = _last_line(capfd.readouterr().err)
    assert "1/3 faces" in line, line        # not 2/3: the faces in flight are not finished
    assert "step 2/4" in line and "it/s" in line
    elapsed, left = re.search(r"\[(\d+:\d+)<(\d+:\d+|\?)", line).groups()
    # 0.5 face in 0.2 s since the first report -> about 0.6 s left for 1.5 faces; counting the
    # 1 s before the first report it would be well over a second.
    assert left == "00:00", line
    bar.faces_done(2)
    line = _last_line(capfd.readouterr().err)
    assert "3/3 faces" in line, line
    bar.close()


def test_disabled_bar_writes_nothing(capfd, monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    bar = FaceBar(2, True, "PULSE")
    bar.step(_report(1), 2)
    bar.faces_done(2)
    bar.close()
    assert capfd.readouterr().err == ""
