"""Read PyTorch ``.pt`` files safely, without PyTorch.

:func:`load_torch_file` returns the saved object with every tensor turned into a
``numpy.ndarray`` (right dtype and shape, ``stride``/``storage_offset`` honoured, C-contiguous,
little-endian) and every ``OrderedDict`` turned into a plain ``dict`` (order kept). The storage
``location`` (``'cpu'``, ``'cuda:0'``, ...) is ignored: everything loads into numpy.

This module only tells the formats apart by their first bytes; each has its reader:

* **zip** (``torch.save`` default since PyTorch 1.6): :mod:`.zip`;
* **legacy** (before 1.6, and ``_use_new_zipfile_serialization=False``): :mod:`.legacy`;
* the tar format of PyTorch < 0.4 is refused.

Safety: the unpickler is restricted (:mod:`.unpickler` holds the allow-list: the exact
globals PyTorch writes for tensors and state dicts, each mapped to a small function or marker;
:mod:`..safe_pickle` the unpickler they share with :mod:`..nvidia_pickle`). Any other global
(``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) raises :class:`UnsafePickleError`
when the pickle names it, which is before the opcode that would call it, so nothing from the
file runs.

Damaged input (cut or corrupt zip, cut legacy stream, garbage, a storage record shorter or
longer than declared, a missing storage record, a tensor view outside its storage) raises
:class:`CheckpointFormatError` naming the file and the problem.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import CheckpointFormatError, UnsafePickleError
from ..safe_pickle import FormatProblem as _Bad
from ..safe_pickle import checkpoint_errors, open_checkpoint
from .legacy import load_legacy
from .zip import load_zip

__all__ = ["load_torch_file", "CheckpointFormatError", "UnsafePickleError"]

PathLike = str | os.PathLike


def load_torch_file(path: PathLike) -> Any:
    """Load a PyTorch ``.pt`` file (zip or legacy format) without PyTorch.

    Returns the saved object with tensors as ``numpy.ndarray`` and ``OrderedDict`` as ``dict``.
    Raises :class:`UnsafePickleError` for any global outside the tensor/state-dict allow-list
    and :class:`CheckpointFormatError` for anything damaged or unsupported.
    """
    spath = os.fspath(path)
    with open_checkpoint(spath) as fh, checkpoint_errors(spath, "corrupt or truncated checkpoint"):
        head = fh.read(512)
        fh.seek(0)
        if len(head) == 0:
            raise _Bad("empty file")
        if head.startswith(b"PK"):
            return load_zip(fh, spath)
        if head[:1] == b"\x80":
            return load_legacy(fh, spath)
        if len(head) >= 262 and head[257:262] == b"ustar":
            raise _Bad("tar-format checkpoint (PyTorch < 0.4) is not supported")
        raise _Bad("not a PyTorch checkpoint (neither a zip archive nor a legacy torch "
                   "pickle stream)")
