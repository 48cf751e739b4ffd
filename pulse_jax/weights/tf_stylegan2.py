"""NVIDIA's TensorFlow StyleGAN2 pickles (``stylegan2-ffhq-config-f.pkl``, ...) by name.

The pickle is read by :mod:`.nvidia_pickle` (the same ``dnnlib.tflib`` Network format as
StyleGAN v1, nothing from it runs). This module maps its static kwargs to the official PyTorch
``Generator`` constructor arguments and its variables to the PyTorch state-dict names, as
NVlabs/stylegan2-ada-pytorch ``legacy.py`` (``convert_tf_generator``) does; the table is in
checkpoints/README.md, and tests/test_tf_stylegan2.py checks every name and operation against
``legacy.py``'s own table (written out by tests/data/make_tf_stylegan2_names.py). One deviation:
for an 'orig' network (ToRGB layers named ``ToRGB_lod{k}``) ``legacy.py`` means to set
``architecture='orig'`` but its line (``kwargs.synthesis.kwargs.architecture``) raises
AttributeError; here the architecture is set as intended. The TF layouts differ from PyTorch's:
dense ``[in, out]``, conv ``[kh, kw, in, out]`` (HWIO), the up-sampling convs' kernels spatially
flipped (TF uses a transposed conv), the affines' biases stored minus 1, and noise maps ``[1, 1,
r, r]``.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

import numpy as np

__all__ = ["init_kwargs", "is_stylegan2", "state_dict"]


def is_stylegan2(synthesis_vars: Mapping[str, Any]) -> bool:
    """StyleGAN2's synthesis has modulation weights (``4x4/Conv/mod_weight``); v1's has none."""
    return any(name.endswith("/mod_weight") for name in synthesis_vars)


def init_kwargs(static_kwargs: Mapping[str, Any], architecture: str) -> dict[str, Any]:
    """The PyTorch ``Generator`` arguments of a TF ``G_main`` with ``static_kwargs``.

    Raises ValueError for a kwarg the conversion does not know (as ``legacy.py`` does). Known
    and ignored, as the official converter ignores them: the sampling options
    ``truncation_psi``, ``truncation_cutoff``, ``style_mixing_prob``, ``structure``, and
    ``conditioning`` and ``fused_modconv`` (accepted by the converter's later version in
    NVlabs/stylegan3 ``legacy.py``; ``fused_modconv`` only picks how TF computes the same
    modulated conv). Also ``label_fmaps`` and ``w_avg_beta`` (training-time only here).
    """
    kw = dict(static_kwargs)
    known: set[str] = set()

    def get(name: str, default: Any = None) -> Any:
        known.add(name)
        value = kw.get(name, default)
        return default if value is None else value

    out = {
        "z_dim": get("latent_size", 512), "c_dim": get("label_size", 0),
        "w_dim": get("dlatent_size", 512), "img_resolution": get("resolution", 1024),
        "img_channels": get("num_channels", 3),
        "mapping_kwargs": {
            "num_layers": get("mapping_layers", 8), "layer_features": kw.get("mapping_fmaps"),
            "activation": get("mapping_nonlinearity", "lrelu"),
            "lr_multiplier": get("mapping_lrmul", 0.01)},
        "synthesis_kwargs": {
            "channel_base": get("fmap_base", 16384) * 2, "channel_max": get("fmap_max", 512),
            "num_fp16_res": get("num_fp16_res", 0), "conv_clamp": kw.get("conv_clamp"),
            "architecture": architecture,
            "resample_filter": list(get("resample_kernel", [1, 3, 3, 1])),
            "use_noise": get("use_noise", True), "activation": get("nonlinearity", "lrelu")},
    }
    known |= {"mapping_fmaps", "conv_clamp", "label_fmaps", "w_avg_beta", "truncation_psi",
              "truncation_cutoff", "style_mixing_prob", "structure", "architecture",
              "conditioning", "fused_modconv"}
    if kw.get("fmap_decay", 1.0) != 1.0 or kw.get("fmap_min", 1) != 1:
        raise ValueError("TF StyleGAN2 pickles with fmap_decay != 1 or fmap_min != 1 are not "
                         "supported")
    known |= {"fmap_decay", "fmap_min"}
    unknown = sorted(set(kw) - known)
    if unknown:
        raise ValueError(f"unknown TensorFlow StyleGAN2 kwargs {unknown}")
    return out


def state_dict(nv: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(init_kwargs, {PyTorch state-dict key: array})`` of :func:`load_nvidia_pickle`'s
    result for a TF StyleGAN2 generator. Raises ValueError naming a missing variable."""
    syn, mapping = dict(nv["synthesis"]), dict(nv["mapping"])
    static = nv.get("network_static_kwargs", {})  # G_main's own, as legacy.py reads them
    lods = {int(m.group(1)): name for name in syn
            if (m := re.fullmatch(r"ToRGB_lod(\d+)/(weight|bias|mod_weight|mod_bias)", name))}
    kwargs = init_kwargs(static, "orig" if lods else static.get("architecture", "skip"))
    res_max = kwargs["img_resolution"]
    for name in list(syn):  # 'orig' nets name their ToRGBs by level of detail
        m = re.fullmatch(r"ToRGB_lod(\d+)/(.*)", name)
        if m:
            r = res_max // 2 ** int(m.group(1))
            syn[f"{r}x{r}/ToRGB/{m.group(2)}"] = syn.pop(name)

    def var(table: Mapping[str, Any], name: str, where: str) -> np.ndarray:
        if name not in table:
            raise ValueError(f"the pickle has no variable {where}/{name}")
        return np.asarray(table[name], np.float32)

    out: dict[str, np.ndarray] = {}
    if "dlatent_avg" not in nv:
        raise ValueError("the pickle has no dlatent_avg (the truncation centre)")
    out["mapping.w_avg"] = np.asarray(nv["dlatent_avg"], np.float32)
    for i in range(kwargs["mapping_kwargs"]["num_layers"]):
        out[f"mapping.fc{i}.weight"] = var(mapping, f"Dense{i}/weight", "mapping").T
        out[f"mapping.fc{i}.bias"] = var(mapping, f"Dense{i}/bias", "mapping")
    s = lambda name: var(syn, name, "synthesis")  # noqa: E731
    log2 = int(round(math.log2(res_max)))
    for res in (2**k for k in range(2, log2 + 1)):
        b, t = f"synthesis.b{res}", f"{res}x{res}"
        # (our layer, TF scope, noise index offset from 2 log2(res)), as legacy.py numbers them
        if res == 4:
            layers = [("conv1", "Conv", 0)]
            out[f"{b}.const"] = s("4x4/Const/const")[0]
        else:
            layers = [("conv0", "Conv0_up", -5), ("conv1", "Conv1", -4)]
        for ours, tf, k in layers:
            w = s(f"{t}/{tf}/weight")
            if tf == "Conv0_up":
                w = w[::-1, ::-1]  # TF's transposed conv vs PyTorch's flipped-weight form
            noise = "noise0" if res == 4 else f"noise{int(math.log2(res)) * 2 + k}"
            out[f"{b}.{ours}.weight"] = np.ascontiguousarray(w.transpose(3, 2, 0, 1))
            out[f"{b}.{ours}.bias"] = s(f"{t}/{tf}/bias")
            out[f"{b}.{ours}.noise_const"] = s(noise)[0, 0]
            out[f"{b}.{ours}.noise_strength"] = s(f"{t}/{tf}/noise_strength")
            out[f"{b}.{ours}.affine.weight"] = s(f"{t}/{tf}/mod_weight").T
            out[f"{b}.{ours}.affine.bias"] = s(f"{t}/{tf}/mod_bias") + 1.0
        if kwargs["synthesis_kwargs"]["architecture"] == "skip" or res == res_max:
            out[f"{b}.torgb.weight"] = s(f"{t}/ToRGB/weight").transpose(3, 2, 0, 1)
            out[f"{b}.torgb.bias"] = s(f"{t}/ToRGB/bias")
            out[f"{b}.torgb.affine.weight"] = s(f"{t}/ToRGB/mod_weight").T
            out[f"{b}.torgb.affine.bias"] = s(f"{t}/ToRGB/mod_bias") + 1.0
        if res > 4 and kwargs["synthesis_kwargs"]["architecture"] == "resnet":
            out[f"{b}.skip.weight"] = np.ascontiguousarray(
                s(f"{t}/Skip/weight")[::-1, ::-1].transpose(3, 2, 0, 1))
    return kwargs, out
