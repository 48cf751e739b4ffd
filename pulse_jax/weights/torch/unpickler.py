"""The restricted unpickler for PyTorch checkpoints: its allow-list and stand-ins.

What a PyTorch pickle may name, and what each name becomes here:

* ``torch._utils._rebuild_tensor{,_v2,_v3}``, ``torch._utils._rebuild_parameter{,_with_state}``
  and ``torch._tensor._rebuild_from_type_v2``: functions that check their arguments and build a
  :class:`~.storage.LazyTensor` (parameters are plain tensors here);
* ``torch.<X>Storage`` (also under ``torch.cuda``), ``torch.storage.UntypedStorage`` and
  ``torch.<dtype>``: markers carrying the numpy dtype;
* ``torch.Tensor``, ``torch.nn.Parameter``, ``torch.nn.Buffer``: markers accepted only as the
  type argument of ``_rebuild_from_type_v2``;
* ``torch.Size``: a tuple of non-negative ints; ``collections.OrderedDict``: a dict;
* ``_codecs.encode`` for latin1 strings (:func:`~..safe_pickle.latin1_encode`) and the builtin
  ``set``/``frozenset``/``bytes`` constructors of :data:`~..safe_pickle.SAFE_BUILTINS`, which
  ``torch.save``'s default pickle protocol 2 writes for those values.

Every stand-in is :class:`~..safe_pickle.Inert` (the pickle cannot set its attributes); the
view of a tensor is checked by :func:`~.storage.view_args` when the pickle names it and
again by :func:`~.storage.tensor_copy` when it is made.

Any other global raises :class:`~..errors.UnsafePickleError` when the pickle names it (see
:mod:`..safe_pickle` for why nothing from the file can then run). :func:`check_storage_record`
validates the persistent id both formats use for a storage, and :func:`finalize` turns the
unpickled object into plain data: tensors become ndarrays, ``OrderedDict`` becomes ``dict``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..safe_pickle import FormatProblem as _Bad
from ..safe_pickle import (SAFE_BUILTINS, Inert, RestrictedUnpickler, latin1_encode, rebuild,
                           stand_in)
from .storage import STORAGE_DTYPES, TORCH_DTYPES, LazyTensor, Storage, view_args

__all__ = ["TorchUnpickler", "check_storage_record", "decode", "finalize"]


class _DTypeName(Inert):
    """A ``torch.<name>`` marker carrying its numpy dtype (``None``: not supported here)."""

    def __init__(self, name: str, dtype: np.dtype | None):
        self.name = name
        self.dtype = dtype

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _StorageType(_DTypeName):
    """Stand-in for ``torch.FloatStorage`` and friends (referenced, never called)."""


class _TorchDType(_DTypeName):
    """Stand-in for a ``torch.<dtype>`` object."""


class _TensorClass(Inert):
    """Stand-in for ``torch.Tensor`` / ``torch.nn.Parameter`` (used by _rebuild_from_type_v2)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


class _StateDict(dict):
    """``collections.OrderedDict`` stand-in; keeps ``_metadata`` set by BUILD, if any."""

    def __setstate__(self, state: Any) -> None:
        if state is not None and not isinstance(state, dict):
            raise _Bad("bad OrderedDict state")
        self.metadata = (state or {}).get("_metadata")


def _make_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any,
                 dtype: Any = None) -> LazyTensor:
    if not isinstance(storage, Storage):
        raise _Bad(f"tensor refers to {type(storage).__name__}, not to a storage record")
    storage_offset, size, stride = view_args(storage_offset, size, stride)
    if dtype is not None:
        if not isinstance(dtype, _TorchDType):
            raise _Bad(f"tensor dtype must be a torch dtype, got {dtype!r}")
        if dtype.dtype is None:
            raise _Bad(f"unsupported tensor dtype {dtype!r}")
        dtype = dtype.dtype
    elif storage.dtype is None:
        raise _Bad(f"storage {storage.key!r} has an unsupported dtype")
    return LazyTensor(storage, storage_offset, size, stride, dtype)


# The rebuild functions keep PyTorch's signatures; the arguments that only matter to autograd
# (requires_grad, hooks, metadata, state) are accepted and dropped.
@stand_in
def _rebuild_tensor(storage, storage_offset, size, stride):
    return _make_tensor(storage, storage_offset, size, stride)


@stand_in
def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _make_tensor(storage, storage_offset, size, stride)


@stand_in
def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks,
                       dtype, metadata=None):
    return _make_tensor(storage, storage_offset, size, stride, dtype)


@stand_in
def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    if not isinstance(data, LazyTensor):
        raise _Bad("parameter does not wrap a tensor")
    return data


@stand_in
def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return _rebuild_parameter(data)


_REBUILDERS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
               _rebuild_parameter_with_state)


@stand_in
def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _REBUILDERS or not isinstance(new_type, _TensorClass):
        raise _Bad("unsupported tensor subclass reconstruction")
    if not isinstance(args, tuple):
        raise _Bad("bad arguments for tensor reconstruction")
    return func(*args)


@stand_in
def _torch_size(*args):
    if len(args) > 1 or not isinstance(args[0] if args else (), (tuple, list)):
        raise _Bad("bad torch.Size")
    return view_args(0, args[0] if args else (), args[0] if args else ())[1]


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    **SAFE_BUILTINS,
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
    ("torch.storage", "UntypedStorage"): _StorageType("UntypedStorage",
                                                      STORAGE_DTYPES["UntypedStorage"]),
}
for _name, _dt in STORAGE_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _StorageType(_name, _dt)
    if _name != "UntypedStorage":
        _ALLOWED_GLOBALS[("torch.cuda", _name)] = _ALLOWED_GLOBALS[("torch", _name)]
for _name, _dt in TORCH_DTYPES.items():
    _ALLOWED_GLOBALS[("torch", _name)] = _TorchDType(_name, _dt)


class TorchUnpickler(RestrictedUnpickler):
    """Unpickles the objects of a PyTorch checkpoint, resolving only the allow-list above."""

    allowed = _ALLOWED_GLOBALS
    may_reference = ("a PyTorch checkpoint may only reference tensor, storage and OrderedDict "
                     "globals")


def decode(value: Any) -> Any:
    """``value`` as ``str`` if it is ASCII ``bytes`` (keys written by Python 2), else as is."""
    return value.decode("ascii") if isinstance(value, bytes) else value


def check_storage_record(pid: Any, lengths: tuple[int, ...]) -> tuple:
    """``(storage_type, key, numel)`` of a ``('storage', type, key, location, numel, ...)`` id.

    ``lengths`` are the tuple lengths the format allows; anything else, or a storage type whose
    dtype is not supported, raises :class:`~..safe_pickle.FormatProblem`.
    """
    if not isinstance(pid, tuple) or len(pid) not in lengths:
        raise _Bad(f"unsupported persistent record {pid!r}")
    if decode(pid[0]) != "storage":
        raise _Bad(f"unsupported persistent record type {pid[0]!r} (only 'storage' is allowed)")
    storage_type, key, numel = pid[1], decode(pid[2]), pid[4]
    if not isinstance(storage_type, _StorageType):
        raise _Bad(f"storage record names {storage_type!r}, not a storage type")
    if storage_type.dtype is None:
        raise _Bad(f"{storage_type!r} is not supported (ml_dtypes missing)")
    if not isinstance(key, str):
        raise _Bad(f"bad storage key {key!r}")
    if not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
        raise _Bad(f"bad element count {numel!r} for storage {key!r}")
    return storage_type, key, numel


def _convert(x: Any, walk, remember) -> Any:
    if isinstance(x, LazyTensor):
        return x.materialize()
    if isinstance(x, Storage):
        return np.array(x.typed(), copy=True)
    if isinstance(x, (_StorageType, _TorchDType)):
        return x.dtype
    raise _Bad(f"unexpected {x!r} in the saved object")  # a marker or stand-in as a value


def finalize(obj: Any) -> Any:
    """The unpickled object with tensors and storages as ndarrays and state dicts as dicts."""
    return rebuild(obj, _convert)
