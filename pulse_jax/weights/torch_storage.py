"""PyTorch storages and the tensors that view them, turned into numpy arrays.

A :class:`Storage` is ``numel`` elements of one dtype whose bytes come from the file (little-
endian unless the zip ``byteorder`` record says big), or, in the legacy format, a byte range of
another storage. A :class:`LazyTensor` is ``(storage, offset, size, stride, dtype)`` as the
pickle names it; its bytes may arrive after the pickle (legacy format), so it is only
materialised once the whole file is read. :meth:`LazyTensor.materialize` returns a C-contiguous,
native little-endian copy and raises :class:`~.safe_pickle.FormatProblem` for a view that
reaches past its storage, as :meth:`Storage.typed` does for a byte count that is not a whole
number of elements.

The dtype tables map PyTorch's storage and dtype names to numpy; a name whose numpy dtype needs
``ml_dtypes`` (bfloat16, float8) maps to ``None`` when that package is missing.
"""

from __future__ import annotations

import numpy as np

from .safe_pickle import FormatProblem as _Bad

try:  # bfloat16 / float8 come from ml_dtypes (a jax dependency); optional otherwise.
    import ml_dtypes as _ml
except ImportError:  # pragma: no cover - jax always installs it
    _ml = None

__all__ = ["STORAGE_DTYPES", "TORCH_DTYPES", "LazyTensor", "Storage"]


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


class Storage:
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


class LazyTensor:
    """A tensor whose storage bytes may not have been read yet (legacy format)."""

    def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple,
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
