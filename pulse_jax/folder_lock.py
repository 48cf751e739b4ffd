"""One run at a time in an output folder: ``flock`` locks that the kernel releases for us.

Two runs writing into one folder would both search every face and record it twice, and
each would delete the other's in-flight temporary files. :func:`hold` prevents that with
two lock files in the folder:

- ``.pulse_jax.lock``, the folder lock: a one-process run takes it exclusively; every
  process of a multi-process job (:mod:`pulse_jax.batch.multihost`) takes it shared, so the
  processes of one job do not exclude each other but do exclude any one-process run;
- ``.pulse_jax.lock.p{p}``, process ``p``'s slot, taken exclusively (a one-process run is
  process 0): two jobs on one folder collide on their slots. It holds who holds it, as JSON
  (``pid``, ``host``, ``started``, ``process``, ``command``), for the refusal's message.

A lock that cannot be had at once raises :class:`OutputBusyError` naming the holders; nothing
waits. One gap is left to the caller: a second job with more processes than the first has
slots the first does not hold; with a ``jax.distributed`` coordinator its processes learn
that the others were refused (:func:`pulse_jax.batch.multihost.hold_output`) and stop too,
but processes started independently (``run_batch(process_index=...)``) cannot know. A
process that dies loses its locks (the kernel closes its files), so a stale lock
file never blocks a later run; the files themselves stay (removing a lock file would let two
runs lock two different files). A file system without locks (some network mounts) is
reported once and the run goes on unlocked. Without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import pathlib
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import Optional

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["LOCK_NAME", "OutputBusyError", "hold", "holders"]

LOCK_NAME = ".pulse_jax.lock"


class OutputBusyError(RuntimeError):
    """The output folder is in use by another run (exit status 4 on the command line).

    Attributes:
      folder: the output folder.
      holders: what the holders' slot files say (dicts with ``pid``, ``host``, ``started``,
        ``process``, ``command``); empty when unknown.
    """

    def __init__(self, folder: os.PathLike, message: str, holders: Optional[list] = None):
        self.folder = pathlib.Path(folder)
        self.holders = list(holders or [])
        super().__init__(message)


def _slot(folder: pathlib.Path, process_index: int) -> pathlib.Path:
    return folder / f"{LOCK_NAME}.p{process_index}"


def _alive(info: dict) -> bool:
    """False only for a process on this host that no longer exists."""
    if info.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(info.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, OverflowError):
        return True
    return True


def holders(folder: os.PathLike) -> list[dict]:
    """What the slot files of ``folder`` say about live holders, by process index."""
    out = []
    for p in sorted(pathlib.Path(folder).glob(f"{LOCK_NAME}.p*")):
        try:
            info = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # empty (released) or being written
        if isinstance(info, dict) and _alive(info):
            out.append(info)
    return out


def _describe(info: dict) -> str:
    proc = info.get("process")
    who = f"pid {info.get('pid')} on host {info.get('host')}, started {info.get('started')}"
    if isinstance(proc, list) and len(proc) == 2 and proc[1] != 1:
        who += f", process {proc[0]} of {proc[1]}"
    return who + (f" ({info['command']})" if info.get("command") else "")


def _busy(folder: pathlib.Path) -> OutputBusyError:
    found = holders(folder)
    by = "; ".join(_describe(h) for h in found) or "a process that did not say who it is"
    return OutputBusyError(
        folder, f"output folder {folder} is in use by another pulse-jax run ({by}); wait for "
                f"it to finish or choose another output folder", found)


def _flock(path: pathlib.Path, exclusive: bool) -> Optional[int]:
    """A descriptor of ``path`` holding the lock; None when someone else holds it.
    OSError(ENOLCK, ...) when the file system has no locks."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_info(fd: int, process_index: int, process_count: int) -> None:
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "process": [process_index, process_count],
            "command": " ".join([pathlib.Path(sys.argv[0]).name, *sys.argv[1:]])[:300]
            if sys.argv and sys.argv[0] else ""}
    os.ftruncate(fd, 0)  # in place: replacing the file would drop the lock
    os.pwrite(fd, json.dumps(info).encode("utf-8"), 0)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)


@contextlib.contextmanager
def hold(folder: os.PathLike, process_index: int = 0, process_count: int = 1,
         log: Optional[Callable[[str], None]] = None) -> Iterator[None]:
    """Holds ``folder`` (which must exist) for process ``process_index`` of a run of
    ``process_count`` processes while the ``with`` block runs (module doc).

    Raises:
      OutputBusyError: another run holds it (nothing was changed in the folder but the lock
        files).
    """
    folder = pathlib.Path(folder)
    if fcntl is None:
        yield
        return
    fds: list[int] = []
    try:
        try:
            for path, exclusive in ((folder / LOCK_NAME, process_count == 1),
                                    (_slot(folder, process_index), True)):
                fd = _flock(path, exclusive)
                if fd is None:
                    raise _busy(folder)
                fds.append(fd)
        except OSError as e:
            if e.errno not in _NO_LOCKS:
                raise
            (log or _stderr)(f"warning: {folder} cannot be locked ({e}); another run into it "
                           "would not be noticed")
        if len(fds) == 2:
            with contextlib.suppress(OSError):  # only the message of a refusal needs it
                _write_info(fds[1], process_index, process_count)
        yield
    finally:
        if len(fds) == 2:
            with contextlib.suppress(OSError):
                os.ftruncate(fds[1], 0)  # before the unlock: no stale holder to report
        for fd in reversed(fds):
            os.close(fd)  # releases its lock
