"""The restricted-unpickler skeleton shared by :mod:`.torch.unpickler` and :mod:`.nvidia_pickle`.

What it allows: by itself, nothing. A loader subclasses :class:`RestrictedUnpickler` and gives
it an allow-list, ``allowed``, mapping each ``(module, name)`` global that its file format may
name to a stand-in defined in that loader (a marker, an inert class, or a small function that
checks its arguments and builds numpy data). The one stand-in shared here is
:func:`latin1_encode`, for ``_codecs.encode``, which is how Python 3 writes ``bytes`` at pickle
protocol < 3. Persistent ids go to the loader's ``persistent_load`` function, or are refused
if it gives none.

Why nothing from the file runs: a pickle can only call what it first gets from ``find_class``
(``GLOBAL``, ``STACK_GLOBAL`` and the ``EXT*`` opcodes all go through it); every other opcode
only builds strings, numbers and builtin containers, or applies ``REDUCE``/``NEWOBJ``/``BUILD``
to what ``find_class`` returned. Here ``find_class`` returns only the allow-listed stand-ins
and raises :class:`UnsafePickleError` for any other global (``os.system``,
``builtins.eval``, ...) as soon as the pickle names it, which is before the opcode that would
call it.

Stand-ins take no pickled state. The ``BUILD`` opcode would set attributes on whatever object
is on the stack (a tensor's stride after its checks, a storage's data, a stand-in function's
``__defaults__``); here it only calls a ``__setstate__`` that the object's class defines and is
refused for anything else. Every stand-in class derives from :class:`Inert`, whose
``__setstate__`` refuses too, and every stand-in function is a :class:`StandIn`. Only the few
classes whose pickled form needs ``BUILD`` (numpy's arrays and dtypes, ``OrderedDict``,
dnnlib's Network) define a ``__setstate__`` of their own, which checks what it is given.

The opcodes are run by Python's own pure-Python unpickler (``pickle._Unpickler``), not the C
one: its memo is a dict, whereas the C unpickler sizes its memo array by the largest index a
``PUT`` names, so that a flipped byte in one index (found by tests/test_pickle_fuzz.py) made
it allocate and clear tens of GB and got the process killed. The pure-Python loop also gives
``BUILD`` its one checked place. Its speed is enough: the opcodes of a weight file are few
(big arrays are single opcodes).

:data:`SAFE_BUILTINS` is what Python's pickler writes for builtin values that have no opcode at
the protocol in use: at protocols 2 and 3 a ``set`` or ``frozenset`` is a call of the global
``builtins.set`` / ``builtins.frozenset`` on a list of its items (protocol 4 has opcodes for
them) and, at protocol 2, an empty ``bytes`` is ``builtins.bytes()``. The stand-ins accept a
list or tuple of plain values only (strings, bytes, numbers, ``None``); Python 2's module name
``__builtin__`` (written at protocol 2 under ``fix_imports``) is read as ``builtins``.

The rest is the plumbing both loaders share: :class:`FormatProblem` for problems found below
the level that knows the file name, :func:`unpickle` (runs an unpickler, turning the pickle
module's own errors into a :class:`FormatProblem`), :func:`open_checkpoint` and
:func:`checkpoint_errors` (everything that goes wrong becomes a
:class:`CheckpointFormatError` naming the file), and :func:`rebuild` (copies the containers of
the unpickled object, replacing the stand-ins in it).
"""

from __future__ import annotations

import contextlib
import pickle
from typing import Any, BinaryIO, Callable, Iterator, Mapping

import numpy as np

from .errors import CheckpointFormatError, UnsafePickleError

__all__ = ["SAFE_BUILTINS", "FormatProblem", "Inert", "RestrictedUnpickler", "StandIn",
           "checkpoint_errors", "latin1_encode", "open_checkpoint", "rebuild", "stand_in",
           "unpickle"]


class FormatProblem(Exception):
    """A format problem found below the level that knows the file name.

    :func:`checkpoint_errors` turns it into a :class:`CheckpointFormatError` naming the file.
    """


class Inert:
    """Base of the stand-in classes: refuses pickled state (the ``BUILD`` opcode)."""

    def __setstate__(self, state: Any) -> None:
        raise FormatProblem(f"the pickle sets the state of a {type(self).__name__}, which takes "
                            "none")


class StandIn(Inert):
    """A stand-in function: what ``find_class`` returns for an allowed callable global."""

    def __init__(self, fn: Callable[..., Any]):
        self._fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__

    def __call__(self, *args: Any) -> Any:
        return self._fn(*args)

    def __repr__(self) -> str:
        return f"<stand-in {self.__name__}>"


def stand_in(fn: Callable[..., Any]) -> StandIn:
    """Decorator: ``fn`` as a :class:`StandIn` (so ``BUILD`` on it is refused)."""
    return StandIn(fn)


@stand_in
def latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode``: how Python 3 writes ``bytes`` at pickle protocol < 3."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise FormatProblem("_codecs.encode is only allowed for latin1 byte strings")
    return text.encode("latin1")


_ATOMS = (str, bytes, int, float, complex, bool, type(None), np.generic)


def _plain_items(items: Any, what: str) -> Any:
    if not isinstance(items, (list, tuple)) or not all(isinstance(v, _ATOMS) for v in items):
        raise FormatProblem(f"{what} may only be built from a list of plain values")
    return items


@stand_in
def _set(items: Any = ()) -> set:
    return set(_plain_items(items, "a set"))


@stand_in
def _frozenset(items: Any = ()) -> frozenset:
    return frozenset(_plain_items(items, "a frozenset"))


@stand_in
def _empty_bytes() -> bytes:
    return b""


SAFE_BUILTINS: dict[tuple[str, str], Any] = {
    ("builtins", "set"): _set,
    ("builtins", "frozenset"): _frozenset,
    ("builtins", "bytes"): _empty_bytes,
}
"""The builtin constructors Python's pickler writes at protocols 2 and 3 (see the module
docstring), for the allow-lists of the readers whose formats may hold them."""


def _load_build(self: pickle._Unpickler) -> None:
    """BUILD, only through a ``__setstate__`` of the object's class (never a dict update)."""
    state = self.stack.pop()
    inst = self.stack[-1]
    setstate = None if isinstance(inst, type) else getattr(type(inst), "__setstate__", None)
    if setstate is None:
        raise FormatProblem(f"the pickle sets the state of a {type(inst).__name__}, which takes "
                            "none")
    setstate(inst, state)


class RestrictedUnpickler(pickle._Unpickler):
    """An unpickler that resolves only the globals in ``allowed`` (set by subclasses).

    Subclasses set ``allowed`` (``{(module, name): stand-in}``), ``may_reference`` (the end
    of the refusal message: what a file of this kind may reference) and ``text_encoding``
    (how Python 2 ``str`` objects are decoded).
    """

    allowed: Mapping[tuple[str, str], Any] = {}
    may_reference: str = "nothing"
    text_encoding: str = "utf-8"
    dispatch = {**pickle._Unpickler.dispatch, pickle.BUILD[0]: _load_build}

    def __init__(self, file: BinaryIO, path: str,
                 persistent_load: Callable[[Any], Any] | None = None):
        super().__init__(file, encoding=self.text_encoding)
        self._path = path
        self._pload = persistent_load

    def find_class(self, module: str, name: str) -> Any:
        obj = self.allowed.get(("builtins" if module == "__builtin__" else module, name))
        if obj is None:
            raise UnsafePickleError(
                f"{self._path}: refusing to load forbidden global '{module}.{name}': "
                f"{self.may_reference}"
            )
        return obj

    def persistent_load(self, pid: Any) -> Any:
        if self._pload is None:
            raise FormatProblem(f"unexpected persistent id {pid!r}")
        return self._pload(pid)


def unpickle(unpickler: RestrictedUnpickler, failure: str) -> Any:
    """``unpickler.load()``; other errors than ours become ``FormatProblem("{failure} (...)")``."""
    try:
        return unpickler.load()
    except (CheckpointFormatError, FormatProblem):
        raise
    except Exception as e:
        raise FormatProblem(f"{failure} ({type(e).__name__}: {e})") from e


def open_checkpoint(path: str) -> BinaryIO:
    """``open(path, "rb")``, raising :class:`CheckpointFormatError` if it cannot be opened."""
    try:
        return open(path, "rb")
    except OSError as e:
        raise CheckpointFormatError(f"{path}: cannot open ({e.strerror or e})") from e


@contextlib.contextmanager
def checkpoint_errors(path: str, malformed: str) -> Iterator[None]:
    """Turns any error in its body into a :class:`CheckpointFormatError` naming ``path``.

    A :class:`CheckpointFormatError` (:class:`UnsafePickleError` included) passes as it is, a
    :class:`FormatProblem` gets the path in front, deep nesting and memory exhaustion get their
    own messages, and anything else (errors of the pickle, zip or struct internals, or of the
    stand-ins, on damaged input) reads ``"{path}: {malformed} ({type}: {message})"``.
    """
    try:
        yield
    except CheckpointFormatError:
        raise
    except FormatProblem as e:
        raise CheckpointFormatError(f"{path}: {e}") from e
    except RecursionError as e:
        raise CheckpointFormatError(f"{path}: object nesting too deep") from e
    except MemoryError as e:
        raise CheckpointFormatError(f"{path}: declared sizes too large for memory") from e
    except Exception as e:
        raise CheckpointFormatError(f"{path}: {malformed} ({type(e).__name__}: {e})") from e


def rebuild(obj: Any, convert: Callable[[Any, Callable[[Any], Any], Callable[[Any], None]], Any]
            ) -> Any:
    """Copies the containers of an unpickled object, replacing everything else in it.

    Strings, bytes, numbers, ``None`` and numpy scalars are kept; dicts (subclasses included) become
    plain dicts (order kept), lists lists and tuples tuples, their items rebuilt in turn; sets
    and frozensets are kept if they hold plain values only (else :class:`FormatProblem`),
    however the pickle built them. Anything else ``x`` is replaced by ``convert(x, walk,
    remember)``: ``walk`` rebuilds a nested value, and ``remember(out)`` records ``out`` as the
    replacement of ``x`` before ``convert`` walks values that may refer back to ``x``. Each
    object is rebuilt once, so shared references stay shared and a dict or list that holds
    itself still does.
    """
    memo: dict[int, Any] = {}

    def walk(x: Any) -> Any:
        if isinstance(x, _ATOMS):
            return x
        key = id(x)
        if key in memo:
            return memo[key]
        if isinstance(x, dict):
            out: Any = {}
            memo[key] = out
            for k, v in x.items():
                out[walk(k)] = walk(v)
        elif isinstance(x, list):
            out = []
            memo[key] = out
            out.extend(walk(v) for v in x)
        elif isinstance(x, tuple):
            out = tuple(walk(v) for v in x)
        elif isinstance(x, (set, frozenset)):
            out = type(x)(_plain_items(list(x), f"a {type(x).__name__}"))
        else:
            out = convert(x, walk, lambda o: memo.__setitem__(key, o))
        memo[key] = out
        return out

    return walk(obj)
