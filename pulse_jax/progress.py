"""A progress bar over faces that moves as search steps complete (tqdm, on stderr).

Set ``TQDM_DISABLE=1`` in the environment (or pass ``enabled=False``) for no bar.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable

import numpy as np

from pulse_jax.search import Progress

__all__ = ["FaceBar"]


class FaceBar:
    """A tqdm bar over faces, advanced fractionally as search steps complete."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        if enabled and total and os.environ.get("TQDM_DISABLE", "") in ("", "0"):
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="face", desc=desc, file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} faces "
                                       "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self.base = 0.0       # whole faces finished
        self.shown = 0.0
        self.t_last = None

    def _to(self, value: float) -> None:
        if self.bar is not None and value > self.shown:
            self.bar.update(value - self.shown)
            self.shown = value

    def chunk_started(self) -> None:
        self.t_last = (time.perf_counter(), 0)

    def step(self, p: Progress, n_faces: int) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        t0, s0 = self.t_last or (now, 0)
        rate = (p.step - s0) / (now - t0) if now > t0 else 0.0
        self.t_last = (now, p.step)
        self._to(self.base + n_faces * p.step / max(p.steps, 1) * 0.999)
        best = float(np.nanmin(p.best_l2)) if np.size(p.best_l2) else float("nan")
        self.bar.set_postfix_str(f"step {p.step}/{p.steps}, {rate:.3g} it/s, best l2 {best:.4g}",
                                 refresh=False)

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
