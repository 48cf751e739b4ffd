"""Import NVIDIA's TensorFlow StyleGAN v1 pickle (``karras2019stylegan-ffhq-1024x1024.pkl``).

Neither TensorFlow nor anything from the pickle is run. The file is ``pickle.dump((G, D, Gs))``
of ``dnnlib.tflib.network.Network`` objects (NVlabs/stylegan, ``training/misc.py`` ``save_pkl``,
highest protocol of Python 3.6, i.e. 4). ``Network.__getstate__`` (``dnnlib/tflib/network.py``)
stores a dict: ``version`` (2 or 3), ``name``, ``static_kwargs`` (build-function keyword
arguments), ``components`` (sub-Networks; for G/Gs: ``mapping`` and ``synthesis``),
``build_module_src`` (the Python source of the build module, which the original
``__setstate__`` ``exec``s; here it is only kept as a string and **never executed**),
``build_func_name`` and ``variables`` (a list of ``(name, numpy array)`` pairs, names relative
to the network, e.g. ``4x4/Const/const``).

The restricted unpickler resolves only: ``dnnlib.tflib.network.Network`` (to an inert stub that
records its state), ``dnnlib.util.EasyDict`` and ``collections.OrderedDict`` (to dicts), and the
numpy reconstruction globals ``numpy.core.multiarray._reconstruct`` /
``numpy._core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype``,
``numpy.core.multiarray.scalar`` / ``numpy._core.multiarray.scalar`` and
``numpy.core.numeric._frombuffer`` / ``numpy._core.numeric._frombuffer`` (all mapped to
re-implementations in :mod:`.numpy_pickle` that accept only numeric dtypes; object arrays are
refused), plus ``_codecs.encode`` restricted to latin1 strings (how Python 3 writes ``bytes`` at
protocol 2) and the builtin ``set``/``frozenset``/``bytes`` constructors of plain values
(:data:`~.safe_pickle.SAFE_BUILTINS`, what protocols 2 and 3 write for those). Any other global raises :class:`UnsafePickleError` before it could run. (The
unpickler and its error plumbing are :mod:`.safe_pickle`'s, shared with :mod:`.torch.files`;
the allow-list is this module's.) Anything else that is not a well-formed Network (a state that
is not a dict, a malformed or repeated variable, missing components) raises
:class:`CheckpointFormatError` naming the file.

The conversion to PULSE's state dicts, with the verified TF -> PULSE table, is
:mod:`.nvidia_to_pulse`; :func:`nvidia_to_pulse_state_dicts`, :func:`blur_kernel` and the
``*_DEFAULTS`` are importable from here too, as callers have always imported them.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np

from .numpy_pickle import NOT_NUMPY, NUMPY_GLOBALS, numpy_value
from .nvidia_to_pulse import (MAPPING_DEFAULTS, SYNTHESIS_DEFAULTS, blur_kernel,
                              nvidia_to_pulse_state_dicts)
from .safe_pickle import FormatProblem as _Bad
from .safe_pickle import (SAFE_BUILTINS, RestrictedUnpickler, checkpoint_errors, latin1_encode,
                          open_checkpoint, rebuild, unpickle)

__all__ = ["load_nvidia_pickle", "nvidia_to_pulse_state_dicts", "blur_kernel",
           "SYNTHESIS_DEFAULTS", "MAPPING_DEFAULTS"]

PathLike = str | os.PathLike

_NETWORK_INDEX = {"G": 0, "D": 1, "Gs": 2}


class _NetworkStub:
    """Stand-in for ``dnnlib.tflib.network.Network``: only stores the pickled state."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict) or hasattr(self, "state"):
            raise _Bad("Network state is not one dict")
        self.state = state


class _DictStub(dict):
    """``collections.OrderedDict`` / ``dnnlib.util.EasyDict`` stand-in."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):  # instance attributes: keep none (EasyDict has none)
            return
        if state is not None:
            raise _Bad("bad dict state")


_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): latin1_encode,
    ("dnnlib.tflib.network", "Network"): _NetworkStub,
    ("dnnlib.util", "EasyDict"): _DictStub,
    ("collections", "OrderedDict"): _DictStub,
    **SAFE_BUILTINS,
    **NUMPY_GLOBALS,
}


class _Unpickler(RestrictedUnpickler):
    allowed = _ALLOWED
    may_reference = ("an NVIDIA StyleGAN pickle may only reference dnnlib Network/EasyDict, "
                     "OrderedDict and numpy array globals")
    text_encoding = "latin1"  # as NVIDIA's load_pkl


def _convert(x: Any, walk, remember) -> Any:
    value = numpy_value(x)
    if value is not NOT_NUMPY:
        return value
    if isinstance(x, _NetworkStub):
        if not hasattr(x, "state"):
            raise _Bad("Network object without state")
        out = _NetworkStub()
        remember(out)
        out.state = walk(x.state)
        return out
    raise _Bad(f"unexpected object of type {type(x).__name__}")


def _finalize(obj: Any) -> Any:
    """Replace array stubs by arrays and dict stubs by dicts; Network stubs keep their state."""
    return rebuild(obj, _convert)


def _network_vars(net: Any, what: str) -> dict[str, np.ndarray]:
    if not isinstance(net, _NetworkStub):
        raise _Bad(f"{what} is not a Network")
    variables = net.state.get("variables")
    if not isinstance(variables, list):
        raise _Bad(f"{what} has no variable list")
    out: dict[str, np.ndarray] = {}
    for item in variables:
        if (not isinstance(item, tuple) or len(item) != 2 or not isinstance(item[0], str)
                or not isinstance(item[1], (np.ndarray, np.generic))):
            raise _Bad(f"{what} has a malformed variable entry")
        name, value = item
        if name in out:
            raise _Bad(f"{what} defines variable {name!r} twice")
        out[name] = np.asarray(value)
    return out


def _kwargs(net: _NetworkStub, what: str) -> dict[str, Any]:
    kw = net.state.get("static_kwargs", {})
    if not isinstance(kw, dict):
        raise _Bad(f"{what} static_kwargs is not a dict")
    return dict(kw)


def load_nvidia_pickle(path: PathLike, network: str = "Gs") -> dict[str, Any]:
    """Read the variables of a TF StyleGAN v1 generator pickle without TensorFlow.

    ``network`` picks ``"G"``, ``"D"`` or ``"Gs"`` (default, the averaged generator) from the
    ``(G, D, Gs)`` tuple; a pickle holding one bare Network is also accepted.

    Returns ``{"mapping": {tf_name: ndarray}, "synthesis": {tf_name: ndarray},
    "static_kwargs": <synthesis static kwargs as stored>, "synthesis_config": <the same merged
    over G_synthesis's defaults, so resolution/fmap_base/fmap_max/... are always present>,
    "mapping_static_kwargs": ..., "network_static_kwargs": <the chosen network's own>,
    "name": ...}`` plus ``"dlatent_avg"`` when the chosen network
    has that variable. Variable names are relative to their component (``Dense0/weight``,
    ``4x4/Const/const``, ...). The stored kwargs hold only what was passed explicitly (for the
    FFHQ model presumably num_channels, resolution and label_size), hence ``synthesis_config``.
    """
    spath = os.fspath(path)
    if network not in _NETWORK_INDEX:
        raise ValueError(f"network must be one of {sorted(_NETWORK_INDEX)}, got {network!r}")
    fh = open_checkpoint(spath)
    with checkpoint_errors(spath, "malformed network pickle"):
        with fh:
            data = fh.read()
        obj = unpickle(_Unpickler(io.BytesIO(data), spath), "corrupt or truncated pickle")
        del data
        obj = _finalize(obj)
        if isinstance(obj, tuple) and len(obj) == 3:
            net = obj[_NETWORK_INDEX[network]]
        elif isinstance(obj, _NetworkStub):
            net = obj
        else:
            raise _Bad("expected a (G, D, Gs) tuple of Networks")
        if not isinstance(net, _NetworkStub):
            raise _Bad(f"{network} is not a Network")
        comps = net.state.get("components")
        if not isinstance(comps, dict) or not all(k in comps for k in ("mapping", "synthesis")):
            raise _Bad(f"network {network!r} has no 'mapping' and 'synthesis' components")
        own = _network_vars(net, f"network {network!r}")
        result: dict[str, Any] = {
            "name": net.state.get("name"),
            "mapping": _network_vars(comps["mapping"], "mapping component"),
            "synthesis": _network_vars(comps["synthesis"], "synthesis component"),
            "static_kwargs": _kwargs(comps["synthesis"], "synthesis"),
            "mapping_static_kwargs": _kwargs(comps["mapping"], "mapping"),
            "network_static_kwargs": _kwargs(net, f"network {network!r}"),
        }
        result["synthesis_config"] = {
            **SYNTHESIS_DEFAULTS,
            **{k: v for k, v in result["static_kwargs"].items() if k in SYNTHESIS_DEFAULTS}}
        if "dlatent_avg" in own:
            result["dlatent_avg"] = own["dlatent_avg"]
        return result
