"""A progress bar over faces that moves as search steps complete (tqdm, on stderr).

Set ``TQDM_DISABLE=1`` in the environment (or pass ``enabled=False``) for no bar.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

import numpy as np

from pulse_jax import search as search_lib

__all__ = ["FaceBar"]


def _tqdm_class():
    from tqdm import tqdm

    class _FacesTqdm(tqdm):
        """tqdm with three more fields for ``bar_format``: ``faces`` (whole faces written),
        ``left`` (our estimate of the time left) and ``detail`` (step, speed, best l2)."""

        faces, left, detail = 0, "?", ""

        @property
        def format_dict(self):
            d = super().format_dict
            d.update(faces=self.faces, left=self.left, detail=self.detail)
            return d

    return _FacesTqdm


class FaceBar:
    """A tqdm bar over faces, advanced fractionally as search steps complete.

    The count shows whole faces written (``5/6 faces`` while the sixth is in flight), and
    the time left is estimated from the steps since the first progress report, so the
    first compilation does not inflate it.
    """

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        self.total = total
        if enabled and total and os.environ.get("TQDM_DISABLE", "") in ("", "0"):
            self.bar = _tqdm_class()(
                total=total, desc=desc, file=sys.stderr, dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {faces}/{total} faces "
                           "[{elapsed}<{left}{detail}]")
        self.base = 0.0       # whole faces finished
        self.shown = 0.0
        self.t_last = None    # (time, step) of the chunk's last report
        self.t_first = None   # (time, faces) at the first step report of the run

    def _to(self, value: float) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        t0, v0 = self.t_first or (now, value)
        eta = (self.total - value) * (now - t0) / (value - v0) if value > v0 else None
        self.bar.faces = int(self.base)
        self.bar.left = "?" if eta is None else self.bar.format_interval(eta)
        self.bar.update(max(value - self.shown, 0.0))
        self.shown = max(value, self.shown)
        self.bar.refresh()

    def chunk_started(self) -> None:
        self.t_last = (time.perf_counter(), 0)

    def step(self, p: search_lib.Progress, n_faces: int) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        t0, s0 = self.t_last or (now, 0)
        rate = (p.step - s0) / (now - t0) if now > t0 else 0.0
        self.t_last = (now, p.step)
        best = float(np.nanmin(p.best_l2)) if np.size(p.best_l2) else float("nan")
        self.bar.detail = f", step {p.step}/{p.steps}, {rate:.3g} it/s, best l2 {best:.4g}"
        value = self.base + n_faces * p.step / max(p.steps, 1) * 0.999
        if self.t_first is None:  # the first report: compilation is behind us
            self.t_first = (now, value)
        self._to(value)

    def faces_done(self, n: int) -> None:
        self.base += n
        self._to(self.base)

    def log(self, log: Callable[[str], None], msg: str) -> None:
        """``log(msg)``, clearing the bar around it so the two do not mix."""
        if self.bar is None:
            log(msg)
            return
        with self.bar.external_write_mode(file=sys.stderr):
            log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
