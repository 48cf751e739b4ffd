"""Re-pickle an ADA network pickle at another protocol, with numpy 1 or numpy 2 module names.

``read_graph`` loads a pickle without resolving any global: each global becomes a
:class:`Global` record and each call of one (REDUCE) a :class:`Call` record holding its
arguments, its BUILD state and the items SETITEMS/APPENDS added; the builtin constructors that
only exist because of the protocol (``builtins.set``/``frozenset``/``bytes`` and
``_codecs.encode``) become the values they build. ``dumps`` writes that graph again with
Python's own (pure-Python) pickler at any protocol: the calls as REDUCE of the same globals,
sets as protocol ``p`` writes them (``builtins.set`` on a list below 4), bytes as ``_codecs.encode``
at 2, so the stream is what ``pickle.dump`` of the original objects (``torch_utils.persistence``
reducers, torch tensors and storages, numpy scalars) gives at that protocol. Module names
``numpy._core``/``numpy.core`` are written as the ``numpy_names`` argument asks (2 or 1).

Nothing here runs anything from the pickle; it is a test helper (tests/data/README.md).
"""

import _compat_pickle
import io
import pickle
import pickletools

_PROTOCOL_VALUES = {
    ("builtins", "set"): set, ("builtins", "frozenset"): frozenset,
    ("__builtin__", "set"): set, ("__builtin__", "frozenset"): frozenset,
    ("builtins", "bytes"): bytes, ("__builtin__", "bytes"): bytes,
    ("_codecs", "encode"): lambda text, enc="utf-8": text.encode(enc),
}


class Global:
    """A global named by the pickle; calling it records the call."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        return Call(self, args)

    def __repr__(self):
        return f"{self.module}.{self.name}"


class Call(dict):
    """``fn(*args)``, then SETITEMS (the dict items), APPENDS (:attr:`items_list`) and BUILD."""

    def __init__(self, fn, args):
        super().__init__()
        self.fn, self.args, self.state, self.items_list = fn, args, None, []

    def __setstate__(self, state):
        self.state = state

    def append(self, x):
        self.items_list.append(x)

    def extend(self, xs):
        self.items_list.extend(xs)

    def __reduce_ex__(self, protocol):
        return (self.fn, self.args, self.state, iter(self.items_list) if self.items_list else None,
                iter(dict.items(self)) if len(self) else None)

    __hash__ = object.__hash__  # calls may sit in sets; identity, as the original objects


class _Reader(pickle.Unpickler):
    def __init__(self, f):
        super().__init__(f)
        self.globals = {}

    def find_class(self, module, name):
        value = _PROTOCOL_VALUES.get((module, name))
        if value is not None:
            return value
        return self.globals.setdefault((module, name), Global(module, name))


def read_graph(data: bytes):
    """The object graph of pickle ``data``, globals as :class:`Global`, calls as :class:`Call`."""
    return _Reader(io.BytesIO(data)).load()


class _Writer(pickle._Pickler):  # the pure-Python pickler, so save_global can be replaced
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, f, protocol, numpy_names):
        super().__init__(f, protocol=protocol)
        self.numpy_names = numpy_names

    def _write_global(self, module, name):
        old, new = ("numpy.core", "numpy._core") if self.numpy_names == 2 else (
            "numpy._core", "numpy.core")
        if module == old or module.startswith(old + "."):
            module = new + module[len(old):]
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            if self.proto < 3:  # Python 3 writes Python 2's names at protocol 2 (fix_imports)
                module = _compat_pickle.REVERSE_IMPORT_MAPPING.get(module, module)
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("utf-8"))

    def save_global(self, obj, name=None):
        self._write_global(obj.__module__, name or obj.__qualname__)
        self.memoize(obj)

    def _save_record(self, obj):
        self._write_global(obj.module, obj.name)
        self.memoize(obj)

    dispatch[Global] = _save_record


def dumps(graph, protocol: int, numpy_names: int) -> bytes:
    """``graph`` pickled at ``protocol`` (2..5), numpy's globals under numpy 1's or numpy 2's
    module names (``numpy_names``: 1 or 2)."""
    buf = io.BytesIO()
    _Writer(buf, protocol, numpy_names).dump(graph)
    return buf.getvalue()


def global_names(data: bytes) -> set:
    """``module.name`` of every global a pickle names (GLOBAL, and STACK_GLOBAL with its two
    strings, followed through the memo)."""
    out, memo, recent = set(), {}, []
    for op, arg, _ in pickletools.genops(data):
        if op.name == "GLOBAL":
            out.add(arg.replace(" ", "."))
        elif op.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
            memo[len(memo) if op.name == "MEMOIZE" else arg] = recent[-1] if recent else None
        elif op.name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(arg))
        elif op.name == "STACK_GLOBAL":
            out.add(f"{recent[-2]}.{recent[-1]}")
            recent.append(None)
        else:
            recent.append(arg if isinstance(arg, str) and "UNICODE" in op.name else None)
    return out


def calls(graph, name: str) -> list:
    """Every :class:`Call` of a global named ``name`` in ``graph``, in the order pickling meets
    them (depth first), each once."""
    out, seen = [], set()

    def walk(x):
        if id(x) in seen or not isinstance(x, (Call, dict, list, tuple, set, frozenset)):
            return
        seen.add(id(x))
        if isinstance(x, Call):
            walk(x.args)
            if x.fn.name == name:
                out.append(x)
            walk(x.state)
            walk(x.items_list)
        for v in ([y for kv in x.items() for y in kv] if isinstance(x, dict) else x):
            walk(v)

    walk(graph)
    return out
