"""The app's work folder: one folder per request under ``{root}/requests``, removed once the
request is answered and the next one starts (Gradio has copied what it serves by then), and
all of ``root`` when the app closes."""

from __future__ import annotations

import pathlib
import shutil
import tempfile
import threading

__all__ = ["WorkFolders"]


class WorkFolders:
    """Per-request folders under ``root`` (created; a fresh temporary folder if None)."""

    def __init__(self, root: pathlib.Path | str | None = None):
        self.own_root = root is None
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="pulse-jax-app-") if root is None
                                 else root).resolve()
        self.requests = self.root / "requests"
        self.requests.mkdir(parents=True, exist_ok=True)
        self._finished: list[pathlib.Path] = []
        self._lock = threading.Lock()

    def new(self) -> pathlib.Path:
        """A new empty request folder; the folders of answered requests are removed first."""
        self.clean()
        return pathlib.Path(tempfile.mkdtemp(prefix="req-", dir=self.requests))

    def finish(self, folder: pathlib.Path) -> None:
        """``folder``'s request is answered: remove it at the next :meth:`new`."""
        with self._lock:
            self._finished.append(folder)

    def clean(self) -> None:
        """Removes the folders of answered requests."""
        with self._lock:
            done, self._finished = self._finished, []
        for folder in done:
            shutil.rmtree(folder, ignore_errors=True)

    def close(self) -> None:
        """Removes every request folder (and ``root`` if it was made here)."""
        self.clean()
        shutil.rmtree(self.root if self.own_root else self.requests, ignore_errors=True)
