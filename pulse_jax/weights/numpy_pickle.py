"""Numeric numpy arrays, dtypes and scalars out of a pickle, without numpy's own unpickling.

numpy pickles an array as ``_reconstruct(ndarray, (0,), b'b')`` followed by a BUILD with
``(version, shape, dtype, is_fortran, raw_bytes)``, a dtype as ``dtype(spec, align, copy)``
plus a BUILD with its byte order, and a scalar as ``scalar(dtype, raw_bytes)``; at pickle
protocol 5 it writes contiguous arrays as ``_frombuffer(buf, dtype, shape, order)``.
:data:`NUMPY_GLOBALS` maps those globals (under ``numpy.core`` and ``numpy._core``) to
re-implementations here.

Accepted: bool, int, uint, float and complex dtypes of the usual sizes, in either byte order;
arrays come out as native-byte-order copies. Refused with :class:`~.safe_pickle.FormatProblem`:
any other dtype (object, structured, strings), an array whose bytes do not match its shape, and
a ``_reconstruct`` of anything but ``numpy.ndarray``, and a second BUILD of the same array.
Object arrays are refused because their data is itself a pickle. Arrays stay
:class:`ArrayStub` until :func:`numpy_value` unwraps them after the load, so the pickle never
holds a real ndarray whose ``__setstate__`` it could call.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from .safe_pickle import FormatProblem as _Bad
from .safe_pickle import Inert, stand_in

__all__ = ["NOT_NUMPY", "NUMPY_GLOBALS", "ArrayStub", "DTypeStub", "numpy_value"]


class _NDArrayType(Inert):
    """Stand-in for the ``numpy.ndarray`` class (only accepted as ``_reconstruct``'s subtype)."""


_NDARRAY = _NDArrayType()
_DTYPE_SPEC = re.compile(r"^(b1|\?|[iu][1248]|f[248]|c(8|16))$")


class DTypeStub:
    """Stand-in for ``numpy.dtype``: a numeric spec and a byte order; see :attr:`numpy_dtype`."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = False):
        if isinstance(spec, bytes):
            spec = spec.decode("latin1")
        if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
            raise _Bad(f"unsupported numpy dtype {spec!r} (only numeric dtypes are allowed)")
        self.spec = spec
        self.order = "|" if spec in ("b1", "?", "i1", "u1") else "<"

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise _Bad(f"bad numpy dtype state {state!r}")
        if len(state) > 3 and (state[2] is not None or state[3] is not None):
            raise _Bad("structured numpy dtypes are not allowed")
        self.order = state[1]

    @property
    def numpy_dtype(self) -> np.dtype:
        dt = np.dtype(self.spec)
        return dt.newbyteorder(self.order) if self.order in "<>" else dt


def _check_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise _Bad(f"bad array shape {shape!r}")
    return shape


def _to_native(arr: np.ndarray) -> np.ndarray:
    return np.array(arr, dtype=arr.dtype.newbyteorder("="), copy=True)


class ArrayStub:
    """The result of ``numpy ... _reconstruct``; BUILD fills in :attr:`array` (once)."""

    def __init__(self, array: np.ndarray | None = None) -> None:
        self.array = array

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise _Bad("numpy array state given twice")
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Bad("bad numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        shape = _check_shape(shape)
        if not isinstance(dtype, DTypeStub):
            raise _Bad("numpy array state has no numeric dtype")
        if isinstance(raw, str):
            raw = raw.encode("latin1")
        if not isinstance(raw, (bytes, bytearray)):
            raise _Bad("numpy array data is not raw bytes (object arrays are not allowed)")
        dt = dtype.numpy_dtype
        count = math.prod(shape)
        if len(raw) != count * dt.itemsize:
            raise _Bad(f"numpy array data has {len(raw)} bytes, shape {shape} of {dt} needs "
                       f"{count * dt.itemsize}")
        arr = np.frombuffer(raw, dtype=dt, count=count).reshape(
            shape, order="F" if fortran else "C")
        self.array = _to_native(arr)


@stand_in
def _np_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> ArrayStub:
    if subtype is not _NDARRAY:
        raise _Bad("numpy _reconstruct of a non-ndarray type")
    return ArrayStub()


@stand_in
def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, DTypeStub):
        raise _Bad("numpy scalar without a numeric dtype")
    if isinstance(data, str):
        data = data.encode("latin1")
    dt = dtype.numpy_dtype
    if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
        raise _Bad("bad numpy scalar data")
    return np.frombuffer(data, dtype=dt)[0].astype(dt.newbyteorder("="))


@stand_in
def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> ArrayStub:
    if not isinstance(dtype, DTypeStub) or not isinstance(buf, (bytes, bytearray)):
        raise _Bad("bad numpy _frombuffer arguments")
    shape = _check_shape(shape)
    dt = dtype.numpy_dtype
    count = math.prod(shape)
    if len(buf) != count * dt.itemsize:
        raise _Bad("numpy buffer size does not match its shape")
    return ArrayStub(_to_native(np.frombuffer(buf, dtype=dt, count=count).reshape(
        shape, order="F" if order == "F" else "C")))


NUMPY_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): DTypeStub,
}
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    NUMPY_GLOBALS[(_m, "_reconstruct")] = _np_reconstruct
    NUMPY_GLOBALS[(_m, "scalar")] = _np_scalar
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
    NUMPY_GLOBALS[(_m, "_frombuffer")] = _np_frombuffer


NOT_NUMPY = object()
"""What :func:`numpy_value` returns for an object that is not numpy's."""


def numpy_value(x: Any) -> Any:
    """The array or dtype a numpy stub stands for, or :data:`NOT_NUMPY`:
    the numpy cases of a format's ``convert`` for :func:`~.safe_pickle.rebuild`."""
    if isinstance(x, ArrayStub):
        if x.array is None:
            raise _Bad("numpy array without data")
        return x.array
    if isinstance(x, DTypeStub):
        return x.numpy_dtype
    return NOT_NUMPY
