"""PyTorch storages and the tensors that view them, turned into numpy arrays.

A :class:`Storage` is ``numel`` elements of one dtype whose bytes come from the file (little-
endian unless the zip ``byteorder`` record says big), or, in the legacy format, a byte range of
another storage. A :class:`LazyTensor` is ``(storage, offset, size, stride, dtype)`` as the
pickle names it; its bytes may arrive after the pickle (legacy format), so it is only
materialised once the whole file is read. Both are :class:`~..safe_pickle.Inert`: the pickle
cannot set their attributes after they were checked.

:func:`view_args` checks a view's ``(offset, size, stride)`` and :func:`tensor_copy` makes the
view (``as_strided``, the one place it is made for every torch-based reader: here and
:mod:`..ada_pickle`) and returns a C-contiguous, native little-endian copy. It checks again, where
the view is made, that the data is a 1-D contiguous array and that the view stays inside it,
and raises :class:`~..safe_pickle.FormatProblem` otherwise, as :meth:`Storage.typed` does for a
byte count that is not a whole number of elements.

The dtype tables map PyTorch's storage and dtype names to numpy; a name whose numpy dtype needs
``ml_dtypes`` (bfloat16, float8) maps to ``None`` when that package is missing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..safe_pickle import FormatProblem as _Bad
from ..safe_pickle import Inert

try:  # bfloat16 / float8 come from ml_dtypes (a jax dependency); optional otherwise.
    import ml_dtypes as _ml
except ImportError:  # pragma: no cover - jax always installs it
    _ml = None

__all__ = ["STORAGE_DTYPES", "TORCH_DTYPES", "LazyTensor", "Storage", "tensor_copy",
           "view_args"]


def _ml_dtype(name: str) -> np.dtype | None:
    if _ml is None or not hasattr(_ml, name):
        return None
    return np.dtype(getattr(_ml, name))


STORAGE_DTYPES: dict[str, np.dtype | None] = {
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

TORCH_DTYPES: dict[str, np.dtype | None] = {
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


class Storage(Inert):
    """One storage: ``numel`` elements of ``dtype``; bytes filled in from the file."""

    def __init__(self, key: str, dtype: np.dtype, numel: int, big_endian: bool = False):
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.big_endian = big_endian
        self.raw: np.ndarray | None = None  # 1-D uint8
        self.base: Storage | None = None  # legacy views: a byte range of another storage
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


def _index(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Bad(f"bad tensor {what} {value!r}")
    return value


def view_args(offset: Any, size: Any, stride: Any) -> tuple[int, tuple, tuple]:
    """``(offset, size, stride)`` of a torch view as ints and int tuples, all non-negative.

    Raises :class:`~..safe_pickle.FormatProblem` for anything else (a negative stride, a bool,
    a float, sizes and strides of different lengths).
    """
    offset = _index(offset, "storage offset")
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)):
        raise _Bad(f"tensor size {size!r} and stride {stride!r} must be tuples")
    size = tuple(_index(n, "size") for n in size)
    stride = tuple(_index(n, "stride") for n in stride)
    if len(size) != len(stride):
        raise _Bad(f"tensor size {size} and stride {stride} have different lengths")
    return offset, size, stride


def tensor_copy(data: np.ndarray, offset: Any, size: Any, stride: Any,
                key: str = "") -> np.ndarray:
    """A C-contiguous copy of the view ``(offset, size, stride)`` (in elements) of ``data``.

    ``data``: the storage (named ``key`` in errors), a 1-D C-contiguous array of the tensor's dtype.
    The view must stay inside it, and may not hold more elements than it (a stride-0 broadcast
    that does could ask for any amount of memory); else :class:`~..safe_pickle.FormatProblem`.
    """
    offset, size, stride = view_args(offset, size, stride)
    name = f"storage {key!r}" if key else "its storage"
    if not (isinstance(data, np.ndarray) and data.ndim == 1 and data.flags.c_contiguous):
        raise _Bad("tensor data is not a flat storage array")
    if any(n == 0 for n in size):
        return np.empty(size, dtype=data.dtype)
    stride = tuple(0 if n == 1 else s for n, s in zip(size, stride))  # unused, may be huge
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= data.size:
        raise _Bad(f"tensor of size {size}, stride {stride}, offset {offset} reaches element "
                   f"{last} of {name} which has only {data.size}")
    if math.prod(size) > data.size:
        raise _Bad(f"tensor of size {size} has more elements than {name} ({data.size}): a "
                   "broadcast view is not supported")
    view = np.lib.stride_tricks.as_strided(
        data[offset:], shape=size, strides=tuple(s * data.itemsize for s in stride),
        writeable=False)
    return np.array(view, order="C", copy=True)


class LazyTensor(Inert):
    """A tensor whose storage bytes may not have been read yet (legacy format)."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple,
                 dtype: np.dtype | None = None):
        self.storage = storage
        self.offset, self.size, self.stride = view_args(offset, size, stride)
        self.dtype = dtype  # None: the storage's dtype

    def materialize(self) -> np.ndarray:
        dtype = self.storage.dtype if self.dtype is None else self.dtype
        if any(n == 0 for n in self.size):
            return np.empty(self.size, dtype=dtype)
        return tensor_copy(self.storage.typed(dtype), self.offset, self.size, self.stride,
                           self.storage.key)
