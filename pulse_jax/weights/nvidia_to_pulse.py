"""Convert the variables of NVIDIA's StyleGAN v1 generator to the PULSE state dicts.

:func:`nvidia_to_pulse_state_dicts` takes what :func:`.nvidia_pickle.load_nvidia_pickle`
returns and gives PULSE's ``(synthesis_sd, mapping_sd)``: float32, C-contiguous, PyTorch
layouts, PULSE ``state_dict()`` names and order. Refused, as :class:`CheckpointFormatError`:
a generator built with settings that PULSE hard-codes otherwise (``_SYNTHESIS_FIXED``,
``_MAPPING_FIXED``), a resolution that is not a power of two >= 4, a missing, wrongly shaped or
non-numeric variable, a variable the table below does not name (those it skips aside),
and mapping and synthesis that disagree on the dlatent size.

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

import math
import re
from typing import Any, Callable

import numpy as np

from .errors import CheckpointFormatError

__all__ = ["nvidia_to_pulse_state_dicts", "blur_kernel", "SYNTHESIS_DEFAULTS",
           "MAPPING_DEFAULTS"]

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

Layout = Callable[[np.ndarray], np.ndarray]


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


# The layout codes of the table above.
def _same(a: np.ndarray) -> np.ndarray:
    return a


def _dense(a: np.ndarray) -> np.ndarray:  # [in, out] -> [out, in]
    return a.T


def _conv(a: np.ndarray) -> np.ndarray:  # [kh, kw, in, out] -> [out, in, kh, kw]
    return a.transpose(3, 2, 0, 1)


def _take(vars_: dict, what: str, tf_name: str, shape: tuple[int, ...],
          fn: Layout) -> np.ndarray:
    """``vars_[tf_name]``, checked to have ``shape``, in PULSE layout ``fn`` as float32."""
    if tf_name not in vars_:
        raise CheckpointFormatError(f"{what} variable '{tf_name}' is missing")
    a = np.asarray(vars_[tf_name])
    if tuple(a.shape) != shape:
        raise CheckpointFormatError(
            f"{what} variable '{tf_name}' has shape {tuple(a.shape)}, expected {shape}")
    if a.dtype.kind not in "fiu":
        raise CheckpointFormatError(f"{what} variable '{tf_name}' has dtype {a.dtype}")
    return np.ascontiguousarray(fn(a), dtype=np.float32)


def _synthesis_state_dict(syn_vars: dict, scfg: dict[str, Any],
                          log2: int) -> dict[str, np.ndarray]:
    """The synthesis table above, for a ``2**log2`` generator configured by ``scfg``."""

    def nf(stage: int) -> int:
        return min(int(scfg["fmap_base"] / (2.0 ** (stage * scfg["fmap_decay"]))),
                   int(scfg["fmap_max"]))

    dl = int(scfg["dlatent_size"])
    used: set[str] = set()
    syn: dict[str, np.ndarray] = {}

    def s(key: str, tf_name: str, shape: tuple[int, ...], fn: Layout = _same) -> None:
        used.add(tf_name)
        syn[key] = _take(syn_vars, "synthesis", tf_name, shape, fn)

    def epilogue(block: str, scope: str, epi: str, c: int) -> None:
        s(f"blocks.{block}.{epi}.noise.weight", f"{scope}/Noise/weight", (c,))
        s(f"blocks.{block}.{epi}.style_mod.lin.weight", f"{scope}/StyleMod/weight", (dl, 2 * c),
          _dense)
        s(f"blocks.{block}.{epi}.style_mod.lin.bias", f"{scope}/StyleMod/bias", (2 * c,))

    c_last = nf(log2 - 1)
    nch = int(scfg["num_channels"])
    s("torgb.weight", "ToRGB_lod0/weight", (1, 1, c_last, nch), _conv)
    s("torgb.bias", "ToRGB_lod0/bias", (nch,))
    c = nf(1)
    s("blocks.4x4.const", "4x4/Const/const", (1, c, 4, 4))
    s("blocks.4x4.bias", "4x4/Const/bias", (c,))
    epilogue("4x4", "4x4/Const", "epi1", c)
    s("blocks.4x4.conv.weight", "4x4/Conv/weight", (3, 3, c, c), _conv)
    s("blocks.4x4.conv.bias", "4x4/Conv/bias", (c,))
    epilogue("4x4", "4x4/Conv", "epi2", c)
    for r in range(3, log2 + 1):
        b = f"{2 ** r}x{2 ** r}"
        cp, c = nf(r - 2), nf(r - 1)
        s(f"blocks.{b}.conv0_up.weight", f"{b}/Conv0_up/weight", (3, 3, cp, c), _conv)
        s(f"blocks.{b}.conv0_up.bias", f"{b}/Conv0_up/bias", (c,))
        syn[f"blocks.{b}.conv0_up.intermediate.kernel"] = blur_kernel()
        epilogue(b, f"{b}/Conv0_up", "epi1", c)
        s(f"blocks.{b}.conv1.weight", f"{b}/Conv1/weight", (3, 3, c, c), _conv)
        s(f"blocks.{b}.conv1.bias", f"{b}/Conv1/bias", (c,))
        epilogue(b, f"{b}/Conv1", "epi2", c)

    skip = re.compile(r"^(lod|noise\d+|ToRGB_lod[1-9]\d*/(weight|bias))$")
    extra = sorted(n for n in syn_vars if n not in used and not skip.match(n))
    if extra:
        raise CheckpointFormatError(f"unexpected synthesis variables {extra[:5]} (resolution "
                                    f"{2 ** log2}, fmap_base {scfg['fmap_base']}, fmap_max "
                                    f"{scfg['fmap_max']})")
    return syn


def _mapping_state_dict(map_vars: dict, mcfg: dict[str, Any], dl: int) -> dict[str, np.ndarray]:
    """The mapping table above; ``dl`` is the synthesis dlatent size it must produce."""
    mp: dict[str, np.ndarray] = {}
    mused: set[str] = set()
    n_layers = int(mcfg["mapping_layers"])
    width_in = int(mcfg["latent_size"])
    for i in range(n_layers):
        out = int(mcfg["dlatent_size"]) if i == n_layers - 1 else int(mcfg["mapping_fmaps"])
        mused.update((f"Dense{i}/weight", f"Dense{i}/bias"))
        mp[f"dense{i}.weight"] = _take(map_vars, "mapping", f"Dense{i}/weight", (width_in, out),
                                       _dense)
        mp[f"dense{i}.bias"] = _take(map_vars, "mapping", f"Dense{i}/bias", (out,), _same)
        width_in = out
    if int(mcfg["dlatent_size"]) != dl:
        raise CheckpointFormatError(f"mapping dlatent_size {mcfg['dlatent_size']} differs from "
                                    f"synthesis dlatent_size {dl}")
    extra = sorted(n for n in map_vars if n not in mused)
    if extra:
        raise CheckpointFormatError(f"unexpected mapping variables {extra[:5]}")
    return mp


def nvidia_to_pulse_state_dicts(
        nv: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Convert :func:`.nvidia_pickle.load_nvidia_pickle` output to ``(synthesis_sd, mapping_sd)``.

    Keys and order follow the PULSE reference's ``state_dict()``; arrays are float32,
    C-contiguous, in PyTorch layouts (dense [out,in], conv OIHW). Raises
    :class:`CheckpointFormatError` naming any missing, unexpected or wrongly shaped variable.
    """
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

    syn = _synthesis_state_dict(syn_vars, scfg, log2)
    mp = _mapping_state_dict(map_vars, mcfg, int(scfg["dlatent_size"]))
    return syn, mp
