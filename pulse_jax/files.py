"""Files that survive crashes: atomic writes, JSON-lines manifests, folder swaps, checksums.

``atomic_write_bytes`` / ``atomic_write_text`` write a temporary file in the target's folder,
fsync it and ``os.replace`` it over the target, so a crash leaves either the old file or the
new one, never half of one. ``append_jsonl`` adds exactly one complete line to a JSON-lines
manifest with a single ``write`` on an ``O_APPEND`` descriptor, and ``read_jsonl`` reads the
complete records back, skipping a partial last line left by a crash. ``replace_dir`` and
``fsync_dir`` do the same for whole folders (the checkpoint writers use them).
``sha256_file`` is the one checksum every manifest records.

An input's name becomes part of output paths (a face's ``{name}.png`` and frames folder
``{name}/HR``, an aligned photo's ``{name}_{k}.png``), so it is first made a plain file name
(:func:`safe_stem`) and then unique (:func:`unique_names`): no name can leave the output
folder, hide, or land on another face's files or the folder's manifests. The batch
(:mod:`pulse_jax.batch.faces`) and the aligner name their outputs with these two.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

PathLike = str | os.PathLike

__all__ = ["append_jsonl", "atomic_write_bytes", "atomic_write_text", "fsync_dir", "read_jsonl",
           "replace_dir", "safe_stem", "sha256_file", "unique_names"]


def sha256_file(path: PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    h = hashlib.sha256()
    with open(os.fspath(path), "rb") as fh:
        for block in iter(lambda: fh.read(chunk_size), b""):
            h.update(block)
    return h.hexdigest()



_UMASK = os.umask(0o022)
os.umask(_UMASK)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(folder: PathLike) -> None:
    """Makes a rename in ``folder`` durable (POSIX); a no-op where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: PathLike, data: bytes) -> pathlib.Path:
    """Replaces ``path``'s content with ``data`` so that no reader ever sees a partial file.

    Writes a uniquely named temporary file (``.<name>.<random>.tmp``) in the same folder,
    flushes and fsyncs it, gives it the target's permissions (or the usual ``0o666 & ~umask``
    for a new file), then ``os.replace``s it over ``path`` and fsyncs the folder. On any
    exception (including KeyboardInterrupt) the temporary file is removed and ``path`` is left
    as it was. Missing parent folders are created. Returns the path.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            _write_all(fd, bytes(data))
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_UMASK
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def replace_dir(new: PathLike, target: PathLike, old: PathLike) -> None:
    """Renames the folder ``new`` to ``target``, replacing the folder already there, if any.

    An existing ``target`` is first renamed to ``old`` (after removing whatever ``old`` held)
    and removed once ``new`` is in place, so ``target`` is never a mix of the two: a crash in
    between leaves the previous folder at ``old``. All three paths must be on one file system.
    The parent folder is not fsynced (see :func:`fsync_dir`).
    """
    if os.path.exists(target):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def atomic_write_text(path: PathLike, text: str, encoding: str = "utf-8") -> pathlib.Path:
    """``atomic_write_bytes(path, text.encode(encoding))``."""
    return atomic_write_bytes(path, text.encode(encoding))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray) or hasattr(o, "__array__"):
        return np.asarray(o).tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"object of type {type(o).__name__} is not JSON serializable")


def _lock(fd: int, on: bool) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: appends are not serialized between processes.
        return
    fcntl.flock(fd, fcntl.LOCK_EX if on else fcntl.LOCK_UN)


def append_jsonl(path: PathLike, record: dict) -> None:
    """Appends ``record`` as one complete JSON line to ``path`` (created if missing).

    The whole line (compact JSON, UTF-8, ending in ``\\n``) goes out in a single ``os.write``
    on an ``O_APPEND`` descriptor, followed by ``fsync``, under an exclusive ``flock`` so
    cooperating processes do not interleave. If the file ends in a partial line (left by a crash
    in an older run), that fragment, which was never a complete record, is cut off first, so the
    manifest stays one record per line. If the write fails or is short, the file is truncated
    back to its previous length before the error is raised.

    numpy scalars and arrays, JAX arrays and paths are converted to JSON numbers, lists and
    strings. NaN and infinity are refused (``ValueError``): they are not JSON; store ``None``.
    """
    line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), allow_nan=False,
                      default=_json_default)
    data = (line + "\n").encode("utf-8")
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        _lock(fd, True)
        size = os.fstat(fd).st_size
        if size:
            tail_start = max(0, size - 65536)
            while True:
                tail = os.pread(fd, size - tail_start, tail_start)
                nl = tail.rfind(b"\n")
                if nl >= 0 or tail_start == 0:
                    break
                tail_start = max(0, tail_start - 65536)
            keep = tail_start + nl + 1 if nl >= 0 else 0
            if keep != size:
                os.ftruncate(fd, keep)
                size = keep
        try:
            n = _write_once(fd, data)
            if n != len(data):
                raise OSError(f"short write to {path} ({n} of {len(data)} bytes)")
            os.fsync(fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
    finally:
        with contextlib.suppress(OSError):
            _lock(fd, False)
        os.close(fd)


def _write_once(fd: int, data: bytes) -> int:
    return os.write(fd, data)


def read_jsonl(path: PathLike) -> list[Any]:
    """Reads the complete records of a JSON-lines file.

    A final line without its ``\\n`` is the remains of a write interrupted by a crash and is
    skipped; blank lines are skipped. A missing file gives ``[]`` (nothing done yet).

    Raises:
      ValueError: a complete line that is not valid JSON (the message gives its line number):
        that is damage, not an interrupted append, and is not hidden.
    """
    try:
        data = pathlib.Path(path).read_bytes()
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    lines.pop()  # text after the last newline: empty, or a partial line from a crash
    out = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            out.append(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: line {i} is not valid JSON ({e})") from e
    return out


# --------------------------------------------------------------------------------------------
# Safe output names
# --------------------------------------------------------------------------------------------

# Path separators (either OS's), NUL and the other control characters.
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
_LEADING_DOTS = re.compile(r"^\.+")
# What an output folder holds besides faces: a name must not be (or make a folder named)
# one of these. Our temporary and lock files start with "." and safe names never do.
_RESERVED = re.compile(r"manifest(\.part\d+of\d+)?\.(jsonl|done)")


def safe_stem(stem: str) -> str:
    """``stem`` as one plain file name: path separators (``/``, ``\\``), NUL and control
    characters become ``_``, and so do leading dots (``..`` -> ``__``, ``.x`` -> ``_x``), so
    the name is never ``.``/``..``, a path, or a hidden file; ``""`` -> ``"_"``. A stem that
    is already plain is returned unchanged."""
    s = _UNSAFE.sub("_", stem)
    s = _LEADING_DOTS.sub(lambda m: "_" * len(m.group()), s)
    return s or "_"


def unique_names(bases: Sequence[str], derived: Callable[[str], list[str]]) -> list[str]:
    """One name per base, in order: the base itself, or ``{base}-2``, ``{base}-3``, ... when
    one of its ``derived(name)`` entries (lower case: the files it makes) is taken by an
    earlier name or is a reserved output file (``manifest.jsonl``, manifest parts)."""
    taken: set[str] = set()
    out = []
    for base in bases:
        name, j = base, 1
        while any(f in taken or _RESERVED.fullmatch(f) for f in derived(name)):
            j += 1
            name = f"{base}-{j}"
        taken.update(derived(name))
        out.append(name)
    return out
