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
re-implementations here that accept only numeric dtypes; object arrays are refused), plus
``_codecs.encode`` restricted to latin1 strings (how Python 3 writes ``bytes`` at protocol 2).
Any other global raises :class:`UnsafePickleError` before it could run. (The unpickler and its
error plumbing are :mod:`.safe_pickle`'s, shared with :mod:`.torch_files`; the allow-list is
this module's.)

Verified TF -> PULSE mapping
----------------------------
Checked against NVlabs/stylegan ``training/networks_stylegan.py`` (``G_synthesis``,
``G_mapping``, ``layer_epilogue``, ``apply_noise``, ``apply_bias``, ``style_mod``,
``upscale2d_conv2d``, ``torgb``) and the PULSE key list (docs/reference.md, "State-dict names",
and ``tests/data/pulse_1024_state_dict_shapes.json``).

Layout codes: ``=`` unchanged; ``T`` dense transpose [in,out] -> [out,in];
``P`` conv permutation (3,2,0,1), [kh,kw,in,out] -> [out,in,kh,kw] (OIHW), no flip.

Synthesis component (TF scope ``G_synthesis``), block ``R`` = 8x8 .. 2^L x 2^L::

    TF variable                       PULSE key                                   code  TF shape -> PULSE shape
    ToRGB_lod0/weight                 torgb.weight                                P     [1,1,C_L,3] -> [3,C_L,1,1]
    ToRGB_lod0/bias                   torgb.bias                                  =     [3]
    4x4/Const/const                   blocks.4x4.const                            =     [1,C,4,4]
    4x4/Const/bias                    blocks.4x4.bias                             =     [C]
    4x4/Const/Noise/weight            blocks.4x4.epi1.noise.weight                =     [C]
    4x4/Const/StyleMod/weight         blocks.4x4.epi1.style_mod.lin.weight        T     [D,2C] -> [2C,D]
    4x4/Const/StyleMod/bias           blocks.4x4.epi1.style_mod.lin.bias          =     [2C]
    4x4/Conv/weight                   blocks.4x4.conv.weight                      P     [3,3,C,C] -> [C,C,3,3]
    4x4/Conv/bias                     blocks.4x4.conv.bias                        =     [C]
    4x4/Conv/Noise/weight             blocks.4x4.epi2.noise.weight                =     [C]
    4x4/Conv/StyleMod/weight          blocks.4x4.epi2.style_mod.lin.weight        T     [D,2C] -> [2C,D]
    4x4/Conv/StyleMod/bias            blocks.4x4.epi2.style_mod.lin.bias          =     [2C]
    R/Conv0_up/weight                 blocks.R.conv0_up.weight                    P     [3,3,Cp,C] -> [C,Cp,3,3]
    R/Conv0_up/bias                   blocks.R.conv0_up.bias                      =     [C]
    (none: TF blur is a constant)     blocks.R.conv0_up.intermediate.kernel       new   outer([1,2,1],[1,2,1])/16 [1,1,3,3]
    R/Conv0_up/Noise/weight           blocks.R.epi1.noise.weight                  =     [C]
    R/Conv0_up/StyleMod/weight        blocks.R.epi1.style_mod.lin.weight          T     [D,2C] -> [2C,D]
    R/Conv0_up/StyleMod/bias          blocks.R.epi1.style_mod.lin.bias            =     [2C]
    R/Conv1/weight                    blocks.R.conv1.weight                       P     [3,3,C,C] -> [C,C,3,3]
    R/Conv1/bias                      blocks.R.conv1.bias                         =     [C]
    R/Conv1/Noise/weight              blocks.R.epi2.noise.weight                  =     [C]
    R/Conv1/StyleMod/weight           blocks.R.epi2.style_mod.lin.weight          T     [D,2C] -> [2C,D]
    R/Conv1/StyleMod/bias             blocks.R.epi2.style_mod.lin.bias            =     [2C]
    lod, noise0 .. noise{2L-3}        (skipped: non-trainable)
    ToRGB_lod1 .. ToRGB_lod{L-2}      (skipped: progressive-growing outputs)

Mapping component (TF scope ``G_mapping``), i = 0..7::

    Dense{i}/weight                   dense{i}.weight                             T     [512,512]
    Dense{i}/bias                     dense{i}.bias                               =     [512]

Top-level network (``Gs``): ``dlatent_avg`` [D] is returned as ``"dlatent_avg"``; ``lod`` is
skipped. ``C`` is the block's width nf(res-1) with nf(s) = min(int(fmap_base / 2^(s *
fmap_decay)), fmap_max), ``Cp`` the previous block's width, ``C_L`` the last width, ``D`` the
dlatent size, ``L`` = log2(resolution). The output dict order is the PULSE ``state_dict()``
order (``torgb`` first, then the blocks), checked against ``pulse_1024_state_dict_shapes.json``.

Notes on the correspondence:

* Scopes: ``layer_epilogue`` runs inside the layer's scope (``Const``, ``Conv``, ``Conv0_up``,
  ``Conv1``) and creates ``Noise/weight`` (``apply_noise``), ``bias`` (``apply_bias``) and
  ``StyleMod/weight``, ``StyleMod/bias`` there. So the bias of the const layer is
  ``4x4/Const/bias`` (PULSE ``blocks.4x4.bias``) and the conv biases live next to the conv weight.
  TF adds that bias after noise; PULSE adds it inside the conv: both are additions.
* Style: TF reshapes the StyleMod output to [-1, 2, C] and uses ``[:,0]`` as scale and ``[:,1]``
  as shift; PULSE reshapes to [B, 2, C, 1, 1] the same way, so the dense weight is only
  transposed, its output rows are not reordered.
* **No spatial flip is needed, fused or not.** TF ``conv2d`` and PyTorch ``conv2d`` are both
  cross-correlations ([kh,kw,in,out] vs [out,in,kh,kw], 'SAME' = pad 1 for 3x3), so (3,2,0,1)
  is exact. For the fused upscale (``upscale2d_conv2d``, used when the *output* resolution is
  >= 128: ``min(x.shape[2:]) * 2 >= 128``, same rule as PULSE), TF transposes the weight to
  [k,k,out,in], zero-pads to 5x5, sums the four shifted 4x4 windows and calls
  ``conv2d_transpose`` (stride 2, 'SAME', filter [kh,kw,out,in]). PULSE takes the
  (3,2,0,1)-converted weight [out,in,3,3], swaps to [in,out,3,3], pads to 5x5, sums the same
  four windows and calls ``conv_transpose2d`` (stride 2, padding 1, weight [in,out,kh,kw]).
  ``conv2d_transpose`` is the adjoint of a stride-2 'SAME' conv2d whose padding for a 4x4 kernel
  is 1 before / 1 after, which is exactly PyTorch's ``conv_transpose2d(padding=1)`` with
  ``w_torch[i,o,kh,kw] = w_tf[kh,kw,o,i]``: the same (3,2,0,1) mapping, no flip. The flip
  described in docs/reference.md, "Fused upsampling is a flipped kernel" (fused == nearest-up
  + 3x3 conv with a flipped kernel) is a property of the fused op itself and holds identically
  in TF and PULSE. ``tests/test_nvidia_pickle.py`` checks this numerically with independent
  numpy implementations of both ops.
* Equalized-lr multipliers, blur and instance-norm epsilon are runtime constants, not variables:
  the stored tensors are the raw TF values in both formats.
"""

from __future__ import annotations

import io
import math
import os
import re
from typing import Any

import numpy as np

from .errors import CheckpointFormatError
from .safe_pickle import FormatProblem as _Bad
from .safe_pickle import (RestrictedUnpickler, checkpoint_errors, latin1_encode, open_checkpoint,
                          rebuild, unpickle)

__all__ = ["load_nvidia_pickle", "nvidia_to_pulse_state_dicts", "blur_kernel",
           "SYNTHESIS_DEFAULTS", "MAPPING_DEFAULTS"]

PathLike = str | os.PathLike

# Defaults of G_synthesis / G_mapping in NVlabs/stylegan training/networks_stylegan.py. The
# pickle's static_kwargs only hold what was passed explicitly (for FFHQ: num_channels,
# resolution, label_size, and dlatent_broadcast for mapping).
SYNTHESIS_DEFAULTS: dict[str, Any] = {
    "dlatent_size": 512, "num_channels": 3, "resolution": 1024, "fmap_base": 8192,
    "fmap_decay": 1.0, "fmap_max": 512, "use_styles": True, "const_input_layer": True,
    "use_noise": True, "nonlinearity": "lrelu", "use_wscale": True, "use_pixel_norm": False,
    "use_instance_norm": True, "fused_scale": "auto", "blur_filter": [1, 2, 1],
}
MAPPING_DEFAULTS: dict[str, Any] = {
    "latent_size": 512, "label_size": 0, "dlatent_size": 512, "mapping_layers": 8,
    "mapping_fmaps": 512, "mapping_lrmul": 0.01, "mapping_nonlinearity": "lrelu",
    "use_wscale": True, "normalize_latents": True,
}
# Settings that the PULSE generator hard-codes: a pickle built otherwise cannot be converted.
_SYNTHESIS_FIXED = ("use_styles", "const_input_layer", "use_noise", "nonlinearity", "use_wscale",
                    "use_pixel_norm", "use_instance_norm", "fused_scale", "blur_filter")
_MAPPING_FIXED = ("label_size", "mapping_lrmul", "mapping_nonlinearity", "use_wscale",
                  "normalize_latents")

_NETWORK_INDEX = {"G": 0, "D": 1, "Gs": 2}


# ---------------------------------------------------------------------------------------------
# Inert stand-ins for the pickled classes


class _NetworkStub:
    """Stand-in for ``dnnlib.tflib.network.Network``: only stores the pickled state."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise _Bad("Network state is not a dict")
        self.state = state


class _DictStub(dict):
    """``collections.OrderedDict`` / ``dnnlib.util.EasyDict`` stand-in."""

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):  # instance attributes: keep none (EasyDict has none)
            return
        if state is not None:
            raise _Bad("bad dict state")


class _NDArrayType:
    """Stand-in for the ``numpy.ndarray`` class (only accepted as ``_reconstruct``'s subtype)."""


_NDARRAY = _NDArrayType()
_DTYPE_SPEC = re.compile(r"^(b1|\?|[iu][1248]|f[248]|c(8|16))$")


class _DTypeStub:
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


class _ArrayStub:
    """The result of ``numpy ... _reconstruct``; BUILD fills in the data."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Bad("bad numpy array state")
        shape, dtype, fortran, raw = state[-4:]
        shape = _check_shape(shape)
        if not isinstance(dtype, _DTypeStub):
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
        arr = np.frombuffer(raw, dtype=dt, count=count).reshape(shape, order="F" if fortran else "C")
        self.array = _to_native(arr)


def _np_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> _ArrayStub:
    if subtype is not _NDARRAY:
        raise _Bad("numpy _reconstruct of a non-ndarray type")
    return _ArrayStub()


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    if not isinstance(dtype, _DTypeStub):
        raise _Bad("numpy scalar without a numeric dtype")
    if isinstance(data, str):
        data = data.encode("latin1")
    dt = dtype.numpy_dtype
    if not isinstance(data, (bytes, bytearray)) or len(data) != dt.itemsize:
        raise _Bad("bad numpy scalar data")
    return np.frombuffer(data, dtype=dt)[0].astype(dt.newbyteorder("="))


def _np_frombuffer(buf: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    if not isinstance(dtype, _DTypeStub) or not isinstance(buf, (bytes, bytearray)):
        raise _Bad("bad numpy _frombuffer arguments")
    shape = _check_shape(shape)
    dt = dtype.numpy_dtype
    count = math.prod(shape)
    if len(buf) != count * dt.itemsize:
        raise _Bad("numpy buffer size does not match its shape")
    return _to_native(np.frombuffer(buf, dtype=dt, count=count).reshape(
        shape, order="F" if order == "F" else "C"))


_ALLOWED: dict[tuple[str, str], Any] = {
    ("_codecs", "encode"): latin1_encode,
    ("dnnlib.tflib.network", "Network"): _NetworkStub,
    ("dnnlib.util", "EasyDict"): _DictStub,
    ("collections", "OrderedDict"): _DictStub,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _DTypeStub,
}
for _m in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _ALLOWED[(_m, "_reconstruct")] = _np_reconstruct
    _ALLOWED[(_m, "scalar")] = _np_scalar
for _m in ("numpy.core.numeric", "numpy._core.numeric"):
    _ALLOWED[(_m, "_frombuffer")] = _np_frombuffer


class _Unpickler(RestrictedUnpickler):
    allowed = _ALLOWED
    may_reference = ("an NVIDIA StyleGAN pickle may only reference dnnlib Network/EasyDict, "
                     "OrderedDict and numpy array globals")
    text_encoding = "latin1"  # as NVIDIA's load_pkl


def _convert(x: Any, walk, remember) -> Any:
    if isinstance(x, _ArrayStub):
        if x.array is None:
            raise _Bad("numpy array without data")
        return x.array
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, _DTypeStub):
        return x.numpy_dtype
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
    "mapping_static_kwargs": ..., "name": ...}`` plus ``"dlatent_avg"`` when the chosen network
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
        }
        result["synthesis_config"] = {
            **SYNTHESIS_DEFAULTS,
            **{k: v for k, v in result["static_kwargs"].items() if k in SYNTHESIS_DEFAULTS}}
        if "dlatent_avg" in own:
            result["dlatent_avg"] = own["dlatent_avg"]
        return result


# ---------------------------------------------------------------------------------------------
# Conversion to the PULSE state dicts


def blur_kernel() -> np.ndarray:
    """The PULSE ``conv0_up.intermediate.kernel`` buffer: outer([1,2,1],[1,2,1])/16, [1,1,3,3]."""
    f = np.array([1.0, 2.0, 1.0], dtype=np.float32)
    return (np.outer(f, f) / 16.0).astype(np.float32).reshape(1, 1, 3, 3)


def _config(kw: dict[str, Any], defaults: dict[str, Any], fixed: tuple[str, ...],
            what: str) -> dict[str, Any]:
    cfg = {**defaults, **{k: v for k, v in kw.items() if k in defaults}}
    for key in fixed:
        value, want = cfg[key], defaults[key]
        same = (list(value) == want) if isinstance(want, list) and isinstance(
            value, (list, tuple)) else value == want
        if not same:
            raise CheckpointFormatError(
                f"{what} static_kwargs {key}={value!r} is not supported: the PULSE generator "
                f"hard-codes {key}={want!r}")
    return cfg


def _layouts():
    def same(a):
        return a

    def dense(a):  # [in, out] -> [out, in]
        return a.T

    def conv(a):  # [kh, kw, in, out] -> [out, in, kh, kw]
        return a.transpose(3, 2, 0, 1)

    return same, dense, conv


def nvidia_to_pulse_state_dicts(
        nv: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Convert :func:`load_nvidia_pickle` output to PULSE ``(synthesis_sd, mapping_sd)``.

    Keys and order follow the PULSE reference's ``state_dict()``; arrays are float32,
    C-contiguous, in PyTorch layouts (dense [out,in], conv OIHW). Raises
    :class:`CheckpointFormatError` naming any missing, unexpected or wrongly shaped variable.
    """
    same, dense, conv = _layouts()
    try:
        syn_vars, map_vars = nv["synthesis"], nv["mapping"]
    except (KeyError, TypeError) as e:
        raise CheckpointFormatError("converter input lacks 'synthesis'/'mapping' variables") from e
    scfg = _config(nv.get("static_kwargs", {}), SYNTHESIS_DEFAULTS, _SYNTHESIS_FIXED, "synthesis")
    mkw = dict(nv.get("mapping_static_kwargs", {}))
    mcfg = _config(mkw, MAPPING_DEFAULTS, _MAPPING_FIXED, "mapping")

    res = int(scfg["resolution"])
    log2 = int(round(math.log2(res))) if res > 0 else 0
    if res < 4 or 2 ** log2 != res:
        raise CheckpointFormatError(f"synthesis resolution {res!r} is not a power of two >= 4")

    def nf(stage: int) -> int:
        return min(int(scfg["fmap_base"] / (2.0 ** (stage * scfg["fmap_decay"]))),
                   int(scfg["fmap_max"]))

    dl = int(scfg["dlatent_size"])

    def take(vars_: dict, what: str, tf_name: str, shape: tuple[int, ...], fn) -> np.ndarray:
        if tf_name not in vars_:
            raise CheckpointFormatError(f"{what} variable '{tf_name}' is missing")
        a = np.asarray(vars_[tf_name])
        if tuple(a.shape) != shape:
            raise CheckpointFormatError(
                f"{what} variable '{tf_name}' has shape {tuple(a.shape)}, expected {shape}")
        if a.dtype.kind not in "fiu":
            raise CheckpointFormatError(f"{what} variable '{tf_name}' has dtype {a.dtype}")
        return np.ascontiguousarray(fn(a), dtype=np.float32)

    used: set[str] = set()
    syn: dict[str, np.ndarray] = {}

    def s(key: str, tf_name: str, shape: tuple[int, ...], fn=same) -> None:
        used.add(tf_name)
        syn[key] = take(syn_vars, "synthesis", tf_name, shape, fn)

    def epilogue(block: str, scope: str, epi: str, c: int) -> None:
        s(f"blocks.{block}.{epi}.noise.weight", f"{scope}/Noise/weight", (c,))
        s(f"blocks.{block}.{epi}.style_mod.lin.weight", f"{scope}/StyleMod/weight", (dl, 2 * c), dense)
        s(f"blocks.{block}.{epi}.style_mod.lin.bias", f"{scope}/StyleMod/bias", (2 * c,))

    c_last = nf(log2 - 1)
    nch = int(scfg["num_channels"])
    s("torgb.weight", "ToRGB_lod0/weight", (1, 1, c_last, nch), conv)
    s("torgb.bias", "ToRGB_lod0/bias", (nch,))
    c = nf(1)
    s("blocks.4x4.const", "4x4/Const/const", (1, c, 4, 4))
    s("blocks.4x4.bias", "4x4/Const/bias", (c,))
    epilogue("4x4", "4x4/Const", "epi1", c)
    s("blocks.4x4.conv.weight", "4x4/Conv/weight", (3, 3, c, c), conv)
    s("blocks.4x4.conv.bias", "4x4/Conv/bias", (c,))
    epilogue("4x4", "4x4/Conv", "epi2", c)
    for r in range(3, log2 + 1):
        b = f"{2 ** r}x{2 ** r}"
        cp, c = nf(r - 2), nf(r - 1)
        s(f"blocks.{b}.conv0_up.weight", f"{b}/Conv0_up/weight", (3, 3, cp, c), conv)
        s(f"blocks.{b}.conv0_up.bias", f"{b}/Conv0_up/bias", (c,))
        syn[f"blocks.{b}.conv0_up.intermediate.kernel"] = blur_kernel()
        epilogue(b, f"{b}/Conv0_up", "epi1", c)
        s(f"blocks.{b}.conv1.weight", f"{b}/Conv1/weight", (3, 3, c, c), conv)
        s(f"blocks.{b}.conv1.bias", f"{b}/Conv1/bias", (c,))
        epilogue(b, f"{b}/Conv1", "epi2", c)

    skip = re.compile(r"^(lod|noise\d+|ToRGB_lod[1-9]\d*/(weight|bias))$")
    extra = sorted(n for n in syn_vars if n not in used and not skip.match(n))
    if extra:
        raise CheckpointFormatError(f"unexpected synthesis variables {extra[:5]} (resolution "
                                    f"{res}, fmap_base {scfg['fmap_base']}, fmap_max "
                                    f"{scfg['fmap_max']})")

    mp: dict[str, np.ndarray] = {}
    mused: set[str] = set()
    n_layers = int(mcfg["mapping_layers"])
    width_in = int(mcfg["latent_size"])
    for i in range(n_layers):
        out = int(mcfg["dlatent_size"]) if i == n_layers - 1 else int(mcfg["mapping_fmaps"])
        mused.update((f"Dense{i}/weight", f"Dense{i}/bias"))
        mp[f"dense{i}.weight"] = take(map_vars, "mapping", f"Dense{i}/weight", (width_in, out), dense)
        mp[f"dense{i}.bias"] = take(map_vars, "mapping", f"Dense{i}/bias", (out,), same)
        width_in = out
    if int(mcfg["dlatent_size"]) != dl:
        raise CheckpointFormatError(f"mapping dlatent_size {mcfg['dlatent_size']} differs from "
                                    f"synthesis dlatent_size {dl}")
    extra = sorted(n for n in map_vars if n not in mused)
    if extra:
        raise CheckpointFormatError(f"unexpected mapping variables {extra[:5]}")
    return syn, mp
