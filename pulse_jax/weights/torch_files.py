"""Read PyTorch ``.pt`` files safely, without PyTorch.

:func:`load_torch_file` returns the saved object with every tensor turned into a
``numpy.ndarray`` (right dtype and shape, ``stride``/``storage_offset`` honoured, C-contiguous,
little-endian) and every ``OrderedDict`` turned into a plain ``dict`` (order kept).

Two on-disk formats are read:

* **zip** (``torch.save`` default since PyTorch 1.6): a zip archive with one top-level folder
  (any name) holding ``data.pkl`` (the pickled object), ``data/<key>`` (one raw record per
  storage) and optionally ``byteorder`` (``little``/``big``, the byte order of those records;
  absent means little). ``data.pkl`` refers to storages by persistent id
  ``('storage', storage_type, key, location, numel)``.
* **legacy** (before 1.6, and ``_use_new_zipfile_serialization=False``): five things back to
  back in one stream: a pickled magic number, the pickled protocol version (1001), a pickled
  sys-info dict, the pickled object (persistent ids ``('storage', storage_type, root_key,
  location, numel, view_metadata)``), the pickled list of storage keys, then for each key in
  that order an int64 element count followed by the raw data. PyTorch's writer converts both
  the count and the data to little-endian whatever the machine (``THPStorage_writeFileRaw``)
  and its reader ignores the sys-info ``little_endian`` flag and ``type_sizes`` (which describe
  the C types of the saving machine: a Windows ``long`` is 4 bytes, yet ``LongStorage`` is
  always int64). This reader does the same: both are checked for being well-formed and are
  otherwise only informative. The storage ``location`` (``'cpu'``, ``'cuda:0'``, ...) is
  ignored: everything loads into numpy.

Safety: the unpickler is restricted. ``find_class`` resolves only the exact globals PyTorch
writes for tensors and state dicts (``torch._utils._rebuild_tensor{,_v2,_v3}``,
``torch._utils._rebuild_parameter{,_with_state}``, ``torch._tensor._rebuild_from_type_v2``,
``collections.OrderedDict``, ``torch.<X>Storage``, ``torch.UntypedStorage``, ``torch.<dtype>``,
``torch.Size``, the tensor/parameter classes, and ``_codecs.encode`` for latin1 strings, which is
how Python 3 pickles ``bytes`` at protocol 2) and maps each to a small function or marker
defined here. Any other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...)
raises :class:`UnsafePickleError` when the pickle names it, which is before the opcode that
would call it, so nothing from the file runs. (The unpickler and its error plumbing are
:mod:`.safe_pickle`'s, shared with :mod:`.nvidia_pickle`; the allow-list is this module's.)

Damaged input (cut or corrupt zip, cut legacy stream, garbage, a storage record shorter or
longer than declared, a missing storage record, a tensor view outside its storage) raises
:class:`CheckpointFormatError` naming the file and the problem.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
from typing import Any

import numpy as np

from .errors import CheckpointFormatError, UnsafePickleError
from .safe_pickle import FormatProblem as _Bad
from .safe_pickle import (RestrictedUnpickler, checkpoint_errors, latin1_encode, open_checkpoint,
                          rebuild, unpickle)

try:  # bfloat16 / float8 come from ml_dtypes (a jax dependency); optional otherwise.
    import ml_dtypes as _ml
except ImportError:  # pragma: no cover - jax always installs it
    _ml = None

__all__ = ["load_torch_file", "CheckpointFormatError", "UnsafePickleError"]

PathLike = str | os.PathLike

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# ---------------------------------------------------------------------------------------------
# dtypes


def _ml_dtype(name: str) -> np.dtype | None:
    if _ml is None or not hasattr(_ml, name):
        return None
    return np.dtype(getattr(_ml, name))


_STORAGE_DTYPES: dict[str, np.dtype | None] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "BFloat16Storage": _ml_dtype("bfloat16"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
    "ComplexFloatStorage": np.dtype("<c8"),
    "ComplexDoubleStorage": np.dtype("<c16"),
    # Untyped storages count bytes; tensors over them carry their own dtype (_rebuild_tensor_v3).
    "UntypedStorage": np.dtype("u1"),
}

_TORCH_DTYPES: dict[str, np.dtype | None] = {
    "float64": np.dtype("<f8"),
    "double": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "half": np.dtype("<f2"),
    "bfloat16": _ml_dtype("bfloat16"),
    "int64": np.dtype("<i8"),
    "long": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "short": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "uint16": np.dtype("<u2"),
    "uint32": np.dtype("<u4"),
    "uint64": np.dtype("<u8"),
    "bool": np.dtype("?"),
    "complex64": np.dtype("<c8"),
    "cfloat": np.dtype("<c8"),
    "complex128": np.dtype("<c16"),
    "cdouble": np.dtype("<c16"),
    "float8_e4m3fn": _ml_dtype("float8_e4m3fn"),
    "float8_e5m2": _ml_dtype("float8_e5m2"),
    "float8_e4m3fnuz": _ml_dtype("float8_e4m3fnuz"),
    "float8_e5m2fnuz": _ml_dtype("float8_e5m2fnuz"),
}


def _swap_unit(dtype: np.dtype) -> int:
    """Byte-swap granularity: the scalar size, or half of it for complex numbers."""
    return dtype.itemsize // 2 if dtype.kind == "c" else dtype.itemsize


def _typed_view(raw: np.ndarray, dtype: np.dtype, big_endian: bool) -> np.ndarray:
    """View 1-D uint8 ``raw`` as ``dtype`` (native little-endian), swapping bytes if needed."""
    if raw.size % dtype.itemsize:
        raise _Bad(f"storage of {raw.size} bytes is not a whole number of {dtype} elements")
    unit = _swap_unit(dtype)
    if big_endian and unit > 1:
        raw = np.ascontiguousarray(raw.reshape(-1, unit)[:, ::-1]).reshape(-1)
    return raw.view(dtype)


# ---------------------------------------------------------------------------------------------
# Objects the restricted unpickler builds


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` and friends (referenced, never called)."""

    def __init__(self, name: str, dtype: np.dtype | None):
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _TorchDType:
    """Stand-in for a ``torch.<dtype>`` object."""

    def __init__(self, name: str, dtype: np.dtype | None):
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _TensorClass:
    """Stand-in for ``torch.Tensor`` / ``torch.nn.Parameter`` (used by _rebuild_from_type_v2)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _Storage:
    """One storage: ``numel`` elements of ``dtype``; bytes filled in from the file."""

    def __init__(self, key: str, dtype: np.dtype, numel: int, big_endian: bool = False):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.big_endian = big_endian
        self.raw: np.ndarray | None = None  # 1-D uint8
        self.base: _Storage | None = None  # legacy views: a byte range of another storage
        self.base_offset = 0
        self._typed: dict[np.dtype, np.ndarray] = {}

    @property
    def nbytes(self) -> int:
        return self.numel * self.dtype.itemsize

    def raw_bytes(self) -> np.ndarray:
        if self.base is not None:
            base = self.base.raw_bytes()
            end = self.base_offset + self.nbytes
            if end > base.size:
                raise _Bad(f"storage view {self.key!r} extends past the end of its base storage")
            return base[self.base_offset:end]
        if self.raw is None:
            raise _Bad(f"missing data for storage {self.key!r}")
        return self.raw

    def typed(self, dtype: np.dtype | None = None) -> np.ndarray:
        dtype = self.dtype if dtype is None else dtype
        arr = self._typed.get(dtype)
        if arr is None:
            arr = _typed_view(self.raw_bytes(), dtype, self.big_endian)
            self._typed[dtype] = arr
        return arr


class _LazyTensor:
    """A tensor whose storage bytes may not have been read yet (legacy format)."""

    def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple,
                 dtype: np.dtype | None = None):
        self.storage = storage
        self.offset = offset
        self.size = size
        self.stride = stride
        self.dtype = dtype  # None: the storage's dtype

    def materialize(self) -> np.ndarray:
        dtype = self.storage.dtype if self.dtype is None else self.dtype
        if any(n == 0 for n in self.size):
            return np.empty(self.size, dtype=dtype)
        data = self.storage.typed(dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= data.size:
            raise _Bad(
                f"tensor of size {self.size}, stride {self.stride}, offset {self.offset} reaches "
                f"element {last} of storage {self.storage.key!r} which has only {data.size}"
            )
        view = np.lib.stride_tricks.as_strided(
            data[self.offset:],
            shape=self.size,
            strides=tuple(s * dtype.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view, dtype=dtype, order="C", copy=True)


class _StateDict(dict):
    """``collections.OrderedDict`` stand-in; keeps ``_metadata`` set by BUILD, if any."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.metadata = state.get("_metadata")


def _int_tuple(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise _Bad(f"tensor {what} must be a tuple of non-negative ints, got {value!r}")
    return tuple(value)


def _make_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any,
                 dtype: Any = None) -> _LazyTensor:
    if not isinstance(storage, _Storage):
        raise _Bad(f"tensor refers to {type(storage).__name__}, not to a storage record")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
        raise _Bad(f"bad tensor storage offset {storage_offset!r}")
    size = _int_tuple(size, "size")
    stride = _int_tuple(stride, "stride")
    if len(size) != len(stride):
        raise _Bad(f"tensor size {size} and stride {stride} have different lengths")
    if dtype is not None:
        if not isinstance(dtype, _TorchDType):
            raise _Bad(f"tensor dtype must be a torch dtype, got {dtype!r}")
        if dtype.dtype is None:
            raise _Bad(f"unsupported tensor dtype {dtype!r}")
        dtype = dtype.dtype
    elif storage.dtype is None:
        raise _Bad(f"storage {storage.key!r} has an unsupported dtype")
    return _LazyTensor(storage, storage_offset, size, stride, dtype)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _make_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _make_tensor(storage, storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    return _make_tensor(storage, storage_offset, size, stride, dtype)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, _LazyTensor):
        raise _Bad("parameter does not wrap a tensor")
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data)


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
               _rebuild_parameter_with_state)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _REBUILDERS or not isinstance(new_type, _TensorClass):
        raise _Bad("unsupported tensor subclass reconstruction")
    if not isinstance(args, tuple):
        raise _Bad("bad arguments for tensor reconstruction")
    return func(*args)


def _torch_size(*args):
    if len(args) > 1:
        raise _Bad("bad torch.Size")
    return _int_tuple(args[0] if args else (), "torch.Size")


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): latin1_encode,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch._tensor", "Tensor"): _TensorClass("torch.Tensor"),
    ("torch", "Tensor"): _TensorClass("torch.Tensor"),
    ("torch.nn.parameter", "Parameter"): _TensorClass("torch.nn.Parameter"),
    ("torch.nn.parameter", "Buffer"): _TensorClass("torch.nn.Buffer"),
    ("torch", "Size"): _torch_size,
    ("collections", "OrderedDict"): _StateDict,
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage", _STORAGE_DTYPES["UntypedStorage"]),
}
for _name, _dt in _STORAGE_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _StorageType(_name, _dt)
    if _name != "UntypedStorage":
        _ALLOWED_GLOBALS[("torch.cuda", _name)] = _ALLOWED_GLOBALS[("torch", _name)]
for _name, _dt in _TORCH_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _TorchDType(_name, _dt)


class _RestrictedUnpickler(RestrictedUnpickler):
    allowed = _ALLOWED_GLOBALS
    may_reference = ("a PyTorch checkpoint may only reference tensor, storage and OrderedDict "
                     "globals")


def _decode(value: Any) -> Any:
    return value.decode("ascii") if isinstance(value, bytes) else value


def _check_storage_record(pid: Any, lengths: tuple[int, ...]) -> tuple:
    if not isinstance(pid, tuple) or len(pid) not in lengths:
        raise _Bad(f"unsupported persistent record {pid!r}")
    if _decode(pid[0]) != "storage":
        raise _Bad(f"unsupported persistent record type {pid[0]!r} (only 'storage' is allowed)")
    storage_type, key, numel = pid[1], _decode(pid[2]), pid[4]
    if not isinstance(storage_type, _StorageType):
        raise _Bad(f"storage record names {storage_type!r}, not a storage type")
    if storage_type.dtype is None:
        raise _Bad(f"{storage_type!r} is not supported (ml_dtypes missing)")
    if not isinstance(key, str):
        raise _Bad(f"bad storage key {key!r}")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise _Bad(f"bad element count {numel!r} for storage {key!r}")
    return storage_type, key, numel


# ---------------------------------------------------------------------------------------------
# Post-processing: lazy tensors -> ndarrays, OrderedDicts -> dicts


def _convert(x: Any, walk, remember) -> Any:
    if isinstance(x, _LazyTensor):
        return x.materialize()
    if isinstance(x, _Storage):
        return np.array(x.typed(), copy=True)
    if isinstance(x, (_StorageType, _TorchDType)):
        return x.dtype
    if isinstance(x, (set, frozenset)):
        return type(x)(walk(v) for v in x)
    return x


def _finalize(obj: Any) -> Any:
    return rebuild(obj, _convert)


# ---------------------------------------------------------------------------------------------
# The two formats


def _load_zip(fh, path: str) -> Any:
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, ValueError) as e:
        raise CheckpointFormatError(f"{path}: corrupt or truncated zip archive ({e})") from e
    with zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkls and "data.pkl" in names:
            pkls = ["data.pkl"]
        if len(pkls) != 1:
            raise CheckpointFormatError(
                f"{path}: not a PyTorch zip checkpoint (expected one '<folder>/data.pkl', found "
                f"{len(pkls)})"
            )
        prefix = pkls[0][: -len("data.pkl")]

        def read(name: str) -> bytes:
            try:
                return zf.read(name)
            except KeyError as e:
                raise _Bad(f"missing archive record '{name}'") from e
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError,
                    RuntimeError) as e:
                raise _Bad(f"cannot read archive record '{name}' ({e})") from e

        big_endian = False
        if prefix + "byteorder" in names:
            order = read(prefix + "byteorder").decode("ascii", "replace").strip()
            if order not in ("little", "big"):
                raise _Bad(f"unknown byteorder record {order!r}")
            big_endian = order == "big"

        storages: dict[str, _Storage] = {}

        def persistent_load(pid: Any) -> _Storage:
            storage_type, key, numel = _check_storage_record(pid, (5,))
            st = storages.get(key)
            if st is None:
                st = _Storage(key, storage_type.dtype, numel, big_endian)
                raw = read(f"{prefix}data/{key}")
                if len(raw) != st.nbytes:
                    raise _Bad(
                        f"storage record 'data/{key}' holds {len(raw)} bytes but "
                        f"{numel} x {storage_type.name} needs {st.nbytes}"
                    )
                st.raw = np.frombuffer(raw, dtype=np.uint8)
                storages[key] = st
            elif st.dtype != storage_type.dtype or st.numel != numel:
                raise _Bad(f"storage {key!r} is referenced with inconsistent types or sizes")
            return st

        data = read(pkls[0])
        obj = _RestrictedUnpickler(io.BytesIO(data), path, persistent_load).load()
        return _finalize(obj)


def _load_legacy(fh, path: str) -> Any:
    # Read into memory: the storages then become zero-copy views of this one buffer.
    data = fh.read()
    fh = io.BytesIO(data)

    def small_pickle(what: str) -> Any:
        return unpickle(_RestrictedUnpickler(fh, path), f"cannot read the {what}")

    magic = small_pickle("magic number")
    if magic != _LEGACY_MAGIC:
        raise _Bad("bad magic number: not a PyTorch checkpoint")
    protocol = small_pickle("protocol version")
    if protocol != _LEGACY_PROTOCOL:
        raise _Bad(f"unsupported legacy protocol version {protocol!r}")
    sys_info = small_pickle("sys-info header")
    if (not isinstance(sys_info, dict) or not isinstance(sys_info.get("little_endian"), bool)
            or not isinstance(sys_info.get("type_sizes", {}), dict)):
        raise _Bad(f"malformed sys-info header {sys_info!r}")

    storages: dict[str, _Storage] = {}

    def persistent_load(pid: Any) -> _Storage:
        storage_type, root_key, numel = _check_storage_record(pid, (5, 6))
        view = _decode(pid[5]) if len(pid) == 6 else None
        root = storages.get(root_key)
        if root is None:
            root = _Storage(root_key, storage_type.dtype, numel)
            storages[root_key] = root
        elif root.dtype != storage_type.dtype or root.numel != numel:
            raise _Bad(f"storage {root_key!r} is referenced with inconsistent types or sizes")
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3):
            raise _Bad(f"bad storage view record {view!r}")
        view_key, offset, view_size = _decode(view[0]), view[1], view[2]
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for v in (offset, view_size)) or offset + view_size > numel:
            raise _Bad(f"bad storage view record {view!r} for storage {root_key!r}")
        st = storages.get(view_key)
        if st is None:
            st = _Storage(str(view_key), storage_type.dtype, view_size)
            st.base, st.base_offset = root, offset * storage_type.dtype.itemsize
            storages[str(view_key)] = st
        return st

    obj = unpickle(_RestrictedUnpickler(fh, path, persistent_load),
                   "cannot unpickle the saved object")

    keys = small_pickle("storage key list")
    if not isinstance(keys, list) or not all(isinstance(k, (str, bytes)) for k in keys):
        raise _Bad("malformed storage key list")
    for key in map(_decode, keys):
        st = storages.get(key)
        if st is None or st.base is not None:
            raise _Bad(f"storage key {key!r} in the key list is not used by the saved object")
        if st.raw is not None:
            raise _Bad(f"storage key {key!r} appears twice in the key list")
        head = fh.read(8)
        if len(head) != 8:
            raise _Bad(f"file ends before the size of storage {key!r}")
        (count,) = struct.unpack("<q", head)
        if count != st.numel:
            raise _Bad(f"storage {key!r} declares {st.numel} elements but its data record "
                       f"says {count}")
        pos = fh.tell()
        have = min(st.nbytes, len(data) - pos)
        if have != st.nbytes:
            raise _Bad(f"file ends inside storage {key!r} ({have} of {st.nbytes} bytes)")
        st.raw = np.frombuffer(data, dtype=np.uint8, count=st.nbytes, offset=pos)
        fh.seek(pos + st.nbytes)
    for key, st in storages.items():
        if st.base is None and st.raw is None:
            raise _Bad(f"missing storage record for key {key!r}")
    return _finalize(obj)


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
            return _load_zip(fh, spath)
        if head[:1] == b"\x80":
            return _load_legacy(fh, spath)
        if len(head) >= 262 and head[257:262] == b"ustar":
            raise _Bad("tar-format checkpoint (PyTorch < 0.4) is not supported")
        raise _Bad("not a PyTorch checkpoint (neither a zip archive nor a legacy torch "
                   "pickle stream)")


