"""Exceptions raised by the weight importers (PyTorch ``.pt`` files, NVIDIA pickles)."""

from __future__ import annotations

__all__ = ["CheckpointFormatError", "UnsafePickleError"]


class CheckpointFormatError(ValueError):
    """A checkpoint file is corrupt, truncated, or not in a supported format.

    The message names the file and says what is wrong with it.
    """


class UnsafePickleError(CheckpointFormatError):
    """A pickle refers to a global that the restricted unpickler does not allow.

    Raised before the global is resolved, so nothing from the file is executed. The message
    names the forbidden global (for example ``os.system``).
    """
