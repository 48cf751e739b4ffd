"""Read NVIDIA's StyleGAN2-ADA PyTorch network pickles without running anything from them.

An ADA pickle (``network-snapshot-*.pkl``, NVlabs/stylegan2-ada-pytorch ``training_loop.py``)
is ``pickle.dump({"G", "D", "G_ema", "augment_pipe", "training_set_kwargs", ...})``. Its
networks are ``torch_utils.persistence`` objects: each pickles as a call of
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` where ``meta`` holds the
**Python source of the class's module** (``module_src``), ``class_name`` and the object's
``state`` (the ``torch.nn.Module`` ``__dict__``: ``_parameters``, ``_buffers``, ``_modules``,
the constructor's ``_init_args``/``_init_kwargs``, ...). The official loader ``exec``s that
source; here it is kept as a string and never executed: the stand-in for
``_reconstruct_persistent_obj`` only records ``class_name`` and ``state``
(:class:`PersistentObject`).

The allow-list: that function, ``collections.OrderedDict`` and ``dnnlib.util.EasyDict`` (as
dicts), the tensor globals ``torch._utils._rebuild_tensor{,_v2}`` /
``_rebuild_parameter{,_with_state}``, ``torch._tensor._rebuild_from_type_v2`` (with
``torch.Tensor`` / ``torch.nn.Parameter`` as inert markers) and
``torch.storage._load_from_bytes`` (a storage saved by ``torch.save`` into bytes, read by
our own restricted PyTorch reader), numpy's scalar/dtype/array globals (numeric only) under
numpy 1's ``numpy.core`` and numpy 2's ``numpy._core`` names, and the builtin ``set`` /
``frozenset`` / ``bytes`` constructors (:data:`~.safe_pickle.SAFE_BUILTINS`). Any other global
raises :class:`UnsafePickleError` before it could run.

Pickle protocols 2 to 5 are read. NVIDIA's snapshots were written by Python 3.7, whose default
protocol 3 has no opcode for sets: every module's ``_non_persistent_buffers_set`` is then a call
of ``builtins.set`` on a list of names, and the numpy scalars (the layers' ``weight_gain``)
name ``numpy.core.multiarray``. Stand-ins refuse the ``BUILD`` opcode
(:class:`~.safe_pickle.Inert`), and a tensor's view of its storage is made and bounds-checked by
:func:`~.torch.storage.tensor_copy`, shared with the ``.pt`` readers.

:func:`load_ada_pickle` returns the chosen network's official ``state_dict()`` (parameters and
persistent buffers as numpy arrays, dotted names) and its constructor arguments.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from .numpy_pickle import NOT_NUMPY, NUMPY_GLOBALS, numpy_value
from .safe_pickle import FormatProblem as _Bad
from .safe_pickle import (SAFE_BUILTINS, Inert, RestrictedUnpickler, checkpoint_errors,
                          latin1_encode, open_checkpoint, rebuild, stand_in, unpickle)
from .torch.legacy import load_legacy
from .torch.storage import tensor_copy
from .torch.zip import load_zip

__all__ = ["PersistentObject", "load_ada_pickle", "state_dict"]

NETWORKS = ("G_ema", "G")


class PersistentObject(Inert):
    """Stand-in for a ``torch_utils.persistence`` object: its class name and state only."""

    def __init__(self, class_name: str, state: dict):
        self.class_name = class_name
        self.state = state

    def __repr__(self) -> str:
        return f"<persistent {self.class_name}>"


@stand_in
def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise _Bad("malformed persistent object record")
    name, src, state = meta.get("class_name"), meta.get("module_src"), meta.get("state")
    if not isinstance(name, str) or not isinstance(src, str) or not isinstance(state, dict):
        raise _Bad("persistent object record lacks class_name, module_src or state")
    return PersistentObject(name, state)  # module_src is dropped, never executed


class _Dict(dict):
    """``OrderedDict`` / ``EasyDict`` stand-in (their pickled instance state is ignored)."""

    def __setstate__(self, state: Any) -> None:
        if state is not None and not isinstance(state, dict):
            raise _Bad("bad dict state")


class _StorageArray(Inert):
    """A storage read from ``_load_from_bytes``: a flat numpy array."""

    def __init__(self, data: np.ndarray):
        self.data = data


class _Tensor(Inert):
    """A rebuilt tensor (its array is handed out only after the load)."""

    def __init__(self, array: np.ndarray):
        self.array = array


@stand_in
def _load_from_bytes(b: Any) -> _StorageArray:
    if not isinstance(b, (bytes, bytearray)):
        raise _Bad("torch storage record is not bytes")
    fh = io.BytesIO(bytes(b))
    obj = load_zip(fh, "<storage>") if b[:2] == b"PK" else load_legacy(fh, "<storage>")
    if not isinstance(obj, np.ndarray) or obj.ndim != 1:
        raise _Bad("torch storage record does not hold a storage")
    return _StorageArray(obj)


@stand_in
def _rebuild_tensor(storage, offset, size, stride, *unused) -> _Tensor:
    if not isinstance(storage, _StorageArray):
        raise _Bad("tensor does not refer to a storage")
    return _Tensor(tensor_copy(storage.data, offset, size, stride))


@stand_in
def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused) -> _Tensor:
    if not isinstance(data, _Tensor):
        raise _Bad("parameter does not wrap a tensor")
    return data


class _TensorType(Inert):
    """Stand-in for ``torch.Tensor`` / ``torch.nn.Parameter`` (only as a rebuild argument)."""


_TENSOR_TYPE = _TensorType()


@stand_in
def _rebuild_from_type_v2(func, new_type, args, state) -> _Tensor:
    """How PyTorch >= 1.x pickles tensors that carry Python attributes; those are dropped."""
    if func not in (_rebuild_tensor, _rebuild_parameter) or new_type is not _TENSOR_TYPE:
        raise _Bad("unsupported tensor reconstruction")
    if not isinstance(args, tuple):
        raise _Bad("bad arguments for tensor reconstruction")
    return func(*args)


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("collections", "OrderedDict"): _Dict,
    ("dnnlib.util", "EasyDict"): _Dict,
    ("dnnlib", "EasyDict"): _Dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch._tensor", "Tensor"): _TENSOR_TYPE,
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _TENSOR_TYPE,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    ("_codecs", "encode"): latin1_encode,
    **SAFE_BUILTINS,
    **NUMPY_GLOBALS,
}


class _Unpickler(RestrictedUnpickler):
    allowed = _ALLOWED
    may_reference = ("a StyleGAN2-ADA pickle may only reference persistent-object, tensor, "
                     "dict and numpy globals")


def _convert(x: Any, walk, remember) -> Any:
    value = numpy_value(x)
    if value is not NOT_NUMPY:
        return value
    if isinstance(x, _Tensor):
        return x.array
    if isinstance(x, PersistentObject):
        out = PersistentObject(x.class_name, {})
        remember(out)
        out.state = walk(x.state)
        return out
    raise _Bad(f"unexpected {x!r} in the pickle")  # a marker or stand-in as a value


def state_dict(obj: PersistentObject, prefix: str = "") -> dict[str, np.ndarray]:
    """The official ``Module.state_dict()``: parameters and persistent buffers, dotted names."""
    out: dict[str, np.ndarray] = {}
    st = obj.state
    skip = st.get("_non_persistent_buffers_set", set())
    if not isinstance(skip, (set, frozenset)):
        raise _Bad(f"{obj.class_name}._non_persistent_buffers_set is not a set")
    for group in ("_parameters", "_buffers"):
        items = st.get(group) or {}
        if not isinstance(items, dict):
            raise _Bad(f"{obj.class_name}.{group} is not a dict")
        for k, v in items.items():
            if v is None or (group == "_buffers" and k in skip):
                continue
            if not isinstance(v, np.ndarray):
                raise _Bad(f"{prefix}{k} is not a tensor")
            out[prefix + k] = v
    mods = st.get("_modules") or {}
    if not isinstance(mods, dict):
        raise _Bad(f"{obj.class_name}._modules is not a dict")
    for k, m in mods.items():
        if m is None:
            continue
        if not isinstance(m, PersistentObject):
            raise _Bad(f"submodule {prefix}{k} is not a persistent network object")
        out.update(state_dict(m, f"{prefix}{k}."))
    return out


def load_ada_pickle(path: os.PathLike, network: str = "G_ema") -> dict[str, Any]:
    """``{"class_name", "init_kwargs", "state_dict"}`` of one network of an ADA pickle.

    ``network``: "G_ema" (the averaged generator that NVIDIA samples from) or "G".
    Raises :class:`UnsafePickleError` for a forbidden global and
    :class:`CheckpointFormatError` (naming the file) for anything malformed.
    """
    spath = os.fspath(path)
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {NETWORKS} for an ADA pickle, got {network!r}")
    fh = open_checkpoint(spath)
    with checkpoint_errors(spath, "malformed StyleGAN2-ADA pickle"):
        with fh:
            data = fh.read()
        obj = unpickle(_Unpickler(io.BytesIO(data), spath), "corrupt or truncated pickle")
        del data
        obj = rebuild(obj, _convert)
        if not isinstance(obj, dict) or network not in obj:
            found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise _Bad(f"expected a dict with a {network!r} network, found {found}")
        net = obj[network]
        if not isinstance(net, PersistentObject) or net.class_name != "Generator":
            raise _Bad(f"{network!r} is not a persistent Generator")
        args = net.state.get("_init_args", ())
        kwargs = net.state.get("_init_kwargs", {})
        if args not in ((), []) or not isinstance(kwargs, dict):
            raise _Bad("the Generator's constructor arguments are not keyword arguments")
        return {"class_name": net.class_name, "init_kwargs": kwargs,
                "state_dict": state_dict(net)}
