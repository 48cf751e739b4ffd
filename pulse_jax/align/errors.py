"""The one error type of :mod:`pulse_jax.align`."""

from __future__ import annotations

import os
import pathlib

__all__ = ["AlignError"]


class AlignError(ValueError):
    """A photo (or one face in it) that cannot be aligned, with a human message.

    Attributes:
      path: the photo concerned, or ``None`` for an array with no file behind it.
      message: what is wrong, without the path.

    ``str(err)`` is ``"<path>: <message>"`` (just the message without a path), so a folder run
    can record it in its manifest and go on with the other photos.
    """

    def __init__(self, path: str | os.PathLike | None, message: str):
        self.path = None if path is None else pathlib.Path(path)
        self.message = message
        super().__init__(self.path, message)  # picklable args

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path is not None else self.message
