"""Tests for pulse_jax.weights.nvidia_pickle (NVIDIA TF StyleGAN v1 pickle import).

The test pickle mirrors the real ``karras2019stylegan-ffhq-1024x1024.pkl``: ``pickle.dump((G, D,
Gs))`` at protocol 4 of objects whose class pickles as ``dnnlib.tflib.network.Network`` and whose
``__getstate__`` returns the dict that NVlabs/stylegan's ``Network.__getstate__`` returns. Fake
``dnnlib`` modules exist in ``sys.modules`` only while writing. The config is small (resolution
128, fmap_base 512, fmap_max 32) so that one fused-upsample block (128x128) exists.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import re
import sys
import types

import numpy as np
import pytest

from pulse_jax.weights.errors import CheckpointFormatError, UnsafePickleError
from pulse_jax.weights.nvidia_pickle import (
    blur_kernel,
    load_nvidia_pickle,
    nvidia_to_pulse_state_dicts,
)

from helpers import modules_installed

RES, FMAP_BASE, FMAP_MAX, DLAT = 128, 512, 32, 512
LOG2 = 7


def nf(stage, base=FMAP_BASE, fmax=FMAP_MAX):
    return min(int(base / 2.0 ** stage), fmax)


def tf_synthesis_shapes(res=RES, base=FMAP_BASE, fmax=FMAP_MAX, dlat=DLAT):
    """Variable names and shapes that G_synthesis creates, in creation order."""
    log2 = int(np.log2(res))
    out = [("lod", ())]
    out += [(f"noise{i}", (1, 1, 2 ** (i // 2 + 2), 2 ** (i // 2 + 2))) for i in range(2 * log2 - 2)]

    def epi(scope, c):
        return [(f"{scope}/Noise/weight", (c,)), (f"{scope}/bias", (c,)),
                (f"{scope}/StyleMod/weight", (dlat, 2 * c)), (f"{scope}/StyleMod/bias", (2 * c,))]

    c = nf(1, base, fmax)
    out += [("4x4/Const/const", (1, c, 4, 4))] + epi("4x4/Const", c)
    out += [("4x4/Conv/weight", (3, 3, c, c))] + epi("4x4/Conv", c)
    for r in range(3, log2 + 1):
        b, cp, c = f"{2 ** r}x{2 ** r}", nf(r - 2, base, fmax), nf(r - 1, base, fmax)
        out += [(f"{b}/Conv0_up/weight", (3, 3, cp, c))] + epi(f"{b}/Conv0_up", c)
        out += [(f"{b}/Conv1/weight", (3, 3, c, c))] + epi(f"{b}/Conv1", c)
    for r in range(2, log2 + 1):  # linear structure in the template graph: one ToRGB per lod
        out += [(f"ToRGB_lod{log2 - r}/weight", (1, 1, nf(r - 1, base, fmax), 3)),
                (f"ToRGB_lod{log2 - r}/bias", (3,))]
    return out


def tf_mapping_shapes():
    out = []
    for i in range(8):
        out += [(f"Dense{i}/weight", (512, 512)), (f"Dense{i}/bias", (512,))]
    return out


def make_vars(shapes, seed):
    rng = np.random.default_rng(seed)
    out = []
    for name, shape in shapes:
        if shape == ():
            out.append((name, np.float32(rng.standard_normal())))  # TF returns numpy scalars
        else:
            out.append((name, rng.standard_normal(shape).astype(np.float32)))
    return out


# ---------------------------------------------------------------------------------------------
# Writing a pickle with the real file's structure


def _fake_dnnlib():
    dnnlib = types.ModuleType("dnnlib")
    tflib = types.ModuleType("dnnlib.tflib")
    network = types.ModuleType("dnnlib.tflib.network")
    util = types.ModuleType("dnnlib.util")

    class Network:
        def __init__(self, state):
            self._state = state

        def __getstate__(self):
            return self._state

    class EasyDict(dict):
        pass

    Network.__module__, Network.__qualname__, Network.__name__ = "dnnlib.tflib.network", "Network", "Network"
    EasyDict.__module__, EasyDict.__qualname__, EasyDict.__name__ = "dnnlib.util", "EasyDict", "EasyDict"
    network.Network, util.EasyDict = Network, EasyDict
    dnnlib.tflib, dnnlib.util, tflib.network = tflib, util, network
    return {"dnnlib": dnnlib, "dnnlib.tflib": tflib, "dnnlib.tflib.network": network,
            "dnnlib.util": util}


def _marker_src(marker):
    # What Network.__setstate__ would exec: creates the marker file if it ever runs.
    return (f"open({str(marker)!r}, 'w').write('executed')\n"
            "def G_synthesis(*a, **k):\n    raise RuntimeError\n")


def build_networks(marker, seed=0, extra_state=None, syn_kwargs=None, with_easydict=True):
    mods = _fake_dnnlib()
    Network, EasyDict = mods["dnnlib.tflib.network"].Network, mods["dnnlib.util"].EasyDict
    base_kw = {"num_channels": 3, "resolution": RES, "label_size": 0, "fmap_base": FMAP_BASE,
               "fmap_max": FMAP_MAX}
    skw = dict(base_kw, **(syn_kwargs or {}))

    def generator(name, s):
        syn_vars = make_vars(tf_synthesis_shapes(), s)
        map_vars = make_vars(tf_mapping_shapes(), s + 100)
        synthesis = Network({
            "version": 3, "name": "G_synthesis",
            "static_kwargs": EasyDict(skw) if with_easydict else dict(skw),
            "components": {}, "build_module_src": _marker_src(marker),
            "build_func_name": "G_synthesis", "variables": syn_vars})
        mapping = Network({
            "version": 3, "name": "G_mapping",
            "static_kwargs": dict(base_kw, dlatent_broadcast=2 * LOG2 - 2),
            "components": {}, "build_module_src": _marker_src(marker),
            "build_func_name": "G_mapping", "variables": map_vars})
        own = [("lod", np.float32(0.0)),
               ("dlatent_avg", np.random.default_rng(s + 200).standard_normal(DLAT).astype(np.float32))]
        state = {"version": 3, "name": name, "static_kwargs": dict(base_kw),
                 "components": {"mapping": mapping, "synthesis": synthesis},
                 "build_module_src": _marker_src(marker), "build_func_name": "G_style",
                 "variables": own}
        state.update(extra_state or {})
        return Network(state), dict(syn_vars), dict(map_vars), dict(own)

    G = generator("G", seed + 1)
    Gs = generator("Gs", seed)
    D = Network({"version": 3, "name": "D", "static_kwargs": dict(base_kw), "components": {},
                 "build_module_src": _marker_src(marker), "build_func_name": "D_basic",
                 "variables": [("4x4/Conv/weight", np.ones((3, 3, 32, 32), np.float32))]})
    return mods, (G[0], D, Gs[0]), {"G": G[1:], "Gs": Gs[1:]}


def write_pickle(path, marker, protocol=4, numpy_core_names=False, **kw):
    mods, nets, truth = build_networks(marker, **kw)
    with modules_installed(mods):
        data = pickle.dumps(nets, protocol=protocol)
    if numpy_core_names:  # what numpy 1.x wrote (the real 2019 file): numpy.core.multiarray
        assert protocol < 4
        data = data.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
        assert b"numpy._core" not in data and b"numpy.core.multiarray" in data
    path.write_bytes(data)
    assert "dnnlib" not in sys.modules
    return path, truth


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    d = tmp_path_factory.mktemp("nv")
    marker = d / "MARKER"
    path, truth = write_pickle(d / "karras_small.pkl", marker)
    return path, truth, marker


# ---------------------------------------------------------------------------------------------
# Loading


def test_load_variables_exactly(written):
    path, truth, marker = written
    nv = load_nvidia_pickle(path)
    assert not marker.exists()
    assert "dnnlib" not in sys.modules and "dnnlib.tflib.network" not in sys.modules
    syn, mp, own = truth["Gs"]
    assert set(nv["synthesis"]) == set(syn) and set(nv["mapping"]) == set(mp)
    for name, value in syn.items():
        got = nv["synthesis"][name]
        assert got.shape == np.shape(value) and got.dtype == np.float32, name
        np.testing.assert_array_equal(got, value, err_msg=name)
    for name, value in mp.items():
        np.testing.assert_array_equal(nv["mapping"][name], value, err_msg=name)
    np.testing.assert_array_equal(nv["dlatent_avg"], own["dlatent_avg"])
    assert nv["static_kwargs"] == {"num_channels": 3, "resolution": RES, "label_size": 0,
                                   "fmap_base": FMAP_BASE, "fmap_max": FMAP_MAX}
    assert type(nv["static_kwargs"]) is dict
    cfg = nv["synthesis_config"]
    assert (cfg["resolution"], cfg["fmap_base"], cfg["fmap_max"], cfg["fmap_decay"]) == (RES, 512, 32, 1.0)
    assert cfg["dlatent_size"] == 512 and cfg["blur_filter"] == [1, 2, 1]
    assert nv["mapping_static_kwargs"]["dlatent_broadcast"] == 12
    assert nv["name"] == "Gs"


def test_select_G_network(written):
    path, truth, _ = written
    nv = load_nvidia_pickle(path, network="G")
    np.testing.assert_array_equal(nv["synthesis"]["4x4/Const/const"], truth["G"][0]["4x4/Const/const"])
    assert not np.array_equal(nv["synthesis"]["4x4/Const/const"],
                              truth["Gs"][0]["4x4/Const/const"])
    with pytest.raises(CheckpointFormatError, match="no 'mapping' and 'synthesis'"):
        load_nvidia_pickle(path, network="D")
    with pytest.raises(ValueError):
        load_nvidia_pickle(path, network="X")


@pytest.mark.parametrize("protocol,core_names", [(2, False), (3, True)])
def test_other_protocols_and_numpy1_names(tmp_path, protocol, core_names):
    marker = tmp_path / "MARKER"
    path, truth = write_pickle(tmp_path / "p.pkl", marker, protocol=protocol,
                               numpy_core_names=core_names, with_easydict=False)
    nv = load_nvidia_pickle(path)
    np.testing.assert_array_equal(nv["synthesis"]["128x128/Conv0_up/weight"],
                                  truth["Gs"][0]["128x128/Conv0_up/weight"])
    assert isinstance(nv["synthesis"]["lod"], (np.floating, np.ndarray))
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------
# Conversion


def _pulse_keys_up_to(res):
    spec = json.loads((pathlib.Path(__file__).parent / "data" /
                       "pulse_1024_state_dict_shapes.json").read_text())
    keys = []
    for entry in spec["synthesis"]["state_dict"]:
        m = re.match(r"blocks\.(\d+)x\d+\.", entry["key"])
        if m is None or int(m.group(1)) <= res:
            keys.append(entry["key"])
    return keys, spec


def test_convert_names_shapes_and_values(written):
    path, truth, _ = written
    syn_tf, map_tf, _ = truth["Gs"]
    sd, md = nvidia_to_pulse_state_dicts(load_nvidia_pickle(path))

    expected_keys, _ = _pulse_keys_up_to(RES)
    assert list(sd) == expected_keys  # same names and order as PULSE's state_dict()
    assert list(md) == [f"dense{i}.{p}" for i in range(8) for p in ("weight", "bias")]
    for v in list(sd.values()) + list(md.values()):
        assert v.dtype == np.float32 and v.flags.c_contiguous

    widths = {4: 32, 8: 32, 16: 32, 32: 32, 64: 16, 128: 8}
    assert sd["blocks.4x4.const"].shape == (1, 32, 4, 4)
    assert sd["torgb.weight"].shape == (3, 8, 1, 1) and sd["torgb.bias"].shape == (3,)
    for r, c in widths.items():
        if r == 4:
            continue
        b, cp = f"{r}x{r}", widths[r // 2]
        assert sd[f"blocks.{b}.conv0_up.weight"].shape == (c, cp, 3, 3)
        assert sd[f"blocks.{b}.conv1.weight"].shape == (c, c, 3, 3)
        assert sd[f"blocks.{b}.epi1.style_mod.lin.weight"].shape == (2 * c, DLAT)
        assert sd[f"blocks.{b}.epi2.noise.weight"].shape == (c,)
        np.testing.assert_array_equal(sd[f"blocks.{b}.conv0_up.intermediate.kernel"],
                                      np.array([[[[1, 2, 1], [2, 4, 2], [1, 2, 1]]]], np.float32) / 16)

    # Exact values at hand-picked indices: OIHW[o,i,h,w] == HWIO[h,w,i,o]; dense [out,in] == [in,out].T
    w_tf = syn_tf["128x128/Conv0_up/weight"]  # fused block, [3,3,16,8]
    assert sd["blocks.128x128.conv0_up.weight"][5, 11, 0, 2] == w_tf[0, 2, 11, 5]
    assert sd["blocks.128x128.conv0_up.weight"][7, 0, 2, 1] == w_tf[2, 1, 0, 7]
    w_tf = syn_tf["8x8/Conv1/weight"]
    assert sd["blocks.8x8.conv1.weight"][3, 17, 1, 0] == w_tf[1, 0, 17, 3]
    assert sd["blocks.4x4.conv.weight"][1, 2, 2, 2] == syn_tf["4x4/Conv/weight"][2, 2, 2, 1]
    assert sd["torgb.weight"][2, 5, 0, 0] == syn_tf["ToRGB_lod0/weight"][0, 0, 5, 2]
    assert sd["blocks.64x64.epi1.style_mod.lin.weight"][30, 400] == \
        syn_tf["64x64/Conv0_up/StyleMod/weight"][400, 30]
    np.testing.assert_array_equal(sd["blocks.4x4.const"], syn_tf["4x4/Const/const"])
    np.testing.assert_array_equal(sd["blocks.4x4.bias"], syn_tf["4x4/Const/bias"])
    np.testing.assert_array_equal(sd["blocks.4x4.epi1.noise.weight"], syn_tf["4x4/Const/Noise/weight"])
    np.testing.assert_array_equal(sd["blocks.4x4.conv.bias"], syn_tf["4x4/Conv/bias"])
    np.testing.assert_array_equal(sd["blocks.4x4.epi2.style_mod.lin.bias"], syn_tf["4x4/Conv/StyleMod/bias"])
    np.testing.assert_array_equal(sd["blocks.32x32.conv0_up.bias"], syn_tf["32x32/Conv0_up/bias"])
    np.testing.assert_array_equal(sd["blocks.32x32.epi1.noise.weight"], syn_tf["32x32/Conv0_up/Noise/weight"])
    np.testing.assert_array_equal(sd["blocks.32x32.epi2.noise.weight"], syn_tf["32x32/Conv1/Noise/weight"])
    np.testing.assert_array_equal(sd["torgb.bias"], syn_tf["ToRGB_lod0/bias"])
    assert md["dense3.weight"][10, 500] == map_tf["Dense3/weight"][500, 10]
    np.testing.assert_array_equal(md["dense7.bias"], map_tf["Dense7/bias"])
    assert not any("noise" in k and "weight" not in k for k in sd)  # noise inputs skipped


def test_convert_full_1024_shapes_match_reference_key_list():
    """Default (FFHQ 1024) config: all 100 + 16 keys and shapes equal the PULSE reference."""
    nv = {"synthesis": {n: np.broadcast_to(np.float32(0.5), s)
                        for n, s in tf_synthesis_shapes(1024, 8192, 512)},
          "mapping": {n: np.broadcast_to(np.float32(0.5), s) for n, s in tf_mapping_shapes()},
          "static_kwargs": {"num_channels": 3, "resolution": 1024, "label_size": 0},
          "mapping_static_kwargs": {"num_channels": 3, "resolution": 1024, "label_size": 0,
                                    "dlatent_broadcast": 18}}
    sd, md = nvidia_to_pulse_state_dicts(nv)
    keys, spec = _pulse_keys_up_to(1024)
    assert len(sd) == 100
    assert [(k, list(v.shape)) for k, v in sd.items()] == \
        [(e["key"], e["shape"]) for e in spec["synthesis"]["state_dict"]]
    assert [(k, list(v.shape)) for k, v in md.items()] == \
        [(e["key"], e["shape"]) for e in spec["mapping"]["state_dict"]]


def test_convert_missing_wrong_extra_and_unsupported(written):
    path, _, _ = written
    nv = load_nvidia_pickle(path)

    bad = dict(nv, synthesis=dict(nv["synthesis"]))
    del bad["synthesis"]["128x128/Conv0_up/weight"]
    with pytest.raises(CheckpointFormatError, match="'128x128/Conv0_up/weight' is missing"):
        nvidia_to_pulse_state_dicts(bad)

    bad = dict(nv, synthesis=dict(nv["synthesis"]))
    bad["synthesis"]["64x64/Conv1/bias"] = np.zeros(17, np.float32)
    with pytest.raises(CheckpointFormatError, match=r"'64x64/Conv1/bias' has shape \(17,\), expected \(16,\)"):
        nvidia_to_pulse_state_dicts(bad)

    bad = dict(nv, mapping=dict(nv["mapping"]))
    del bad["mapping"]["Dense5/bias"]
    with pytest.raises(CheckpointFormatError, match="mapping variable 'Dense5/bias' is missing"):
        nvidia_to_pulse_state_dicts(bad)

    bad = dict(nv, synthesis=dict(nv["synthesis"]))
    bad["synthesis"]["256x256/Conv1/weight"] = np.zeros((3, 3, 4, 4), np.float32)
    with pytest.raises(CheckpointFormatError, match="unexpected synthesis variables"):
        nvidia_to_pulse_state_dicts(bad)

    # The same variables read as a 256 model do not fit (ToRGB width and the 256x256 block).
    with pytest.raises(CheckpointFormatError, match=r"'ToRGB_lod0/weight' has shape \(1, 1, 8, 3\)"):
        nvidia_to_pulse_state_dicts(dict(nv, static_kwargs=dict(nv["static_kwargs"], resolution=256)))

    for key, value in [("fused_scale", True), ("blur_filter", None), ("use_noise", False),
                       ("const_input_layer", False)]:
        with pytest.raises(CheckpointFormatError, match=key):
            nvidia_to_pulse_state_dicts(dict(nv, static_kwargs=dict(nv["static_kwargs"], **{key: value})))


def test_blur_kernel():
    k = blur_kernel()
    assert k.shape == (1, 1, 3, 3) and k.dtype == np.float32 and k.sum() == 1.0
    assert k[0, 0, 1, 1] == 0.25 and k[0, 0, 0, 0] == 1 / 16


# ---------------------------------------------------------------------------------------------
# No flip needed: TF's fused upscale conv == PULSE's fused path with the converted weight


def _tf_conv2d_same(x, w, stride=1):
    """TF conv2d (cross-correlation), NCHW without batch, filter [k,k,in,out], 'SAME' padding."""
    k, n_in = w.shape[0], x.shape[1]
    n_out = -(-n_in // stride)
    pad = max((n_out - 1) * stride + k - n_in, 0)
    pb = pad // 2
    y = np.zeros((w.shape[3], n_out, n_out))
    for i in range(n_out):
        for j in range(n_out):
            for kh in range(k):
                for kw in range(k):
                    a, b = i * stride + kh - pb, j * stride + kw - pb
                    if 0 <= a < n_in and 0 <= b < n_in:
                        y[:, i, j] += x[:, a, b] @ w[kh, kw]
    return y


def _tf_conv2d_transpose_same(x, w, out_size, stride=2):
    """TF conv2d_transpose, filter [k,k,out,in]: the adjoint (transpose) of the stride-2 'SAME'
    conv2d from [out, out_size, out_size] to x's shape, built as an explicit matrix."""
    n_out_ch = w.shape[2]
    dim = n_out_ch * out_size * out_size
    cols = []
    for e in range(dim):  # forward operator A applied to the basis vectors
        basis = np.zeros(dim)
        basis[e] = 1.0
        cols.append(_tf_conv2d_same(basis.reshape(n_out_ch, out_size, out_size), w, stride).ravel())
    a = np.stack(cols, axis=1)  # [dim(y), dim(X)]
    return (a.T @ x.ravel()).reshape(n_out_ch, out_size, out_size)


def _torch_conv2d(x, w, pad):
    """PyTorch conv2d (cross-correlation), weight [out,in,k,k]."""
    k = w.shape[2]
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    n = xp.shape[1] - k + 1
    y = np.zeros((w.shape[0], n, n))
    for kh in range(k):
        for kw in range(k):
            y += np.einsum("oi,ihw->ohw", w[:, :, kh, kw], xp[:, kh:kh + n, kw:kw + n])
    return y


def _torch_conv_transpose2d(x, w, stride, pad):
    """PyTorch conv_transpose2d by its scatter definition, weight [in,out,k,k]."""
    cin, h, _ = x.shape
    k, cout = w.shape[2], w.shape[1]
    n = (h - 1) * stride - 2 * pad + k
    y = np.zeros((cout, n, n))
    for i in range(h):
        for j in range(h):
            for kh in range(k):
                for kw in range(k):
                    a, b = i * stride - pad + kh, j * stride - pad + kw
                    if 0 <= a < n and 0 <= b < n:
                        y[:, a, b] += x[:, i, j] @ w[:, :, kh, kw]
    return y


def _up(x):
    return x.repeat(2, axis=1).repeat(2, axis=2)


def test_fused_upscale_needs_no_flip():
    rng = np.random.default_rng(3)
    cin, cout, h = 4, 2, 3
    x = rng.standard_normal((cin, h, h))
    w_tf = rng.standard_normal((3, 3, cin, cout)).astype(np.float32).astype(np.float64)  # TF [k,k,in,out]

    # TF upscale2d_conv2d, fused branch
    wt = np.pad(w_tf.transpose(0, 1, 3, 2), ((1, 1), (1, 1), (0, 0), (0, 0)))
    wt = wt[1:, 1:] + wt[:-1, 1:] + wt[1:, :-1] + wt[:-1, :-1]  # [4,4,out,in]
    y_tf = _tf_conv2d_transpose_same(x, wt, 2 * h)

    def pulse_fused(w_oihw):
        w = np.pad(w_oihw.transpose(1, 0, 2, 3), ((0, 0), (0, 0), (1, 1), (1, 1)))
        w = w[:, :, 1:, 1:] + w[:, :, :-1, 1:] + w[:, :, 1:, :-1] + w[:, :, :-1, :-1]
        return _torch_conv_transpose2d(x, w, stride=2, pad=1)

    # The converter's layout, applied through the real converter code path.
    w_pulse = w_tf.transpose(3, 2, 0, 1)
    nv_w = _convert_single_conv(w_tf)
    np.testing.assert_array_equal(nv_w, w_pulse.astype(np.float32))

    np.testing.assert_allclose(pulse_fused(w_pulse), y_tf, rtol=0, atol=1e-12)
    assert np.abs(pulse_fused(w_pulse[:, :, ::-1, ::-1]) - y_tf).max() > 1e-2  # a flip would be wrong

    # Non-fused (TF conv2d after nearest upscale) == PyTorch conv2d with the same converted weight.
    np.testing.assert_allclose(_torch_conv2d(_up(x), w_pulse, 1), _tf_conv2d_same(_up(x), w_tf),
                               rtol=0, atol=1e-12)
    # docs/reference.md, "Fused upsampling is a flipped kernel", holds for TF itself:
    # fused == nearest-up + 3x3 conv, kernel flipped.
    np.testing.assert_allclose(y_tf, _torch_conv2d(_up(x), w_pulse[:, :, ::-1, ::-1], 1),
                               rtol=0, atol=1e-12)


def _convert_single_conv(w_tf):
    """Run the converter on a tiny 8x8 model (fmap_base 8: widths 4 then 2) whose 8x8 Conv0_up
    weight is ``w_tf`` [3,3,4,2]; return the converted PULSE weight."""
    assert w_tf.shape == (3, 3, 4, 2)
    syn = {n: np.zeros(s, np.float32) for n, s in tf_synthesis_shapes(8, 8, 512, DLAT)}
    syn["8x8/Conv0_up/weight"] = w_tf.astype(np.float32)
    nv = {"synthesis": syn, "mapping": {n: np.zeros(s, np.float32) for n, s in tf_mapping_shapes()},
          "static_kwargs": {"resolution": 8, "fmap_base": 8, "fmap_max": 512}}
    sd, _ = nvidia_to_pulse_state_dicts(nv)
    return sd["blocks.8x8.conv0_up.weight"]


# ---------------------------------------------------------------------------------------------
# Safety and damaged files


class _Evil:
    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def test_marker_payload_is_live(tmp_path):
    """The build_module_src planted in the test pickles does create the marker when exec'd, so
    'marker not created' in the other tests really means the source was never executed."""
    marker = tmp_path / "MARKER"
    exec(_marker_src(marker), {})  # noqa: S102 - deliberately, on our own string
    assert marker.exists()


@pytest.mark.parametrize("fn,label", [(os.system, "system"), (exec, "exec"), (eval, "eval")])
def test_extra_forbidden_global_refused(tmp_path, fn, label):
    marker = tmp_path / "MARKER"
    payload = f"touch {marker}" if fn is os.system else _marker_src(marker)
    if fn is eval:
        payload = f"open({str(marker)!r}, 'w').close()"
    path, _ = write_pickle(tmp_path / "evil.pkl", marker, extra_state={"evil": _Evil(fn, payload)})
    with pytest.raises(UnsafePickleError, match=label) as ei:
        load_nvidia_pickle(path)
    assert "evil.pkl" in str(ei.value)
    assert not marker.exists()


def test_object_arrays_refused(tmp_path):
    marker = tmp_path / "MARKER"
    path, _ = write_pickle(tmp_path / "obj.pkl", marker,
                           extra_state={"variables": [("x", np.array([1, "a"], dtype=object))]})
    with pytest.raises(CheckpointFormatError, match="dtype"):
        load_nvidia_pickle(path)


def test_truncated_and_garbage(tmp_path, written):
    path, _, marker = written
    data = path.read_bytes()
    n = len(data)
    for cut in (0, 1, 2, 50, 500, 5000, n // 3, n // 2, n - 100, n - 2, n - 1):
        p = tmp_path / f"cut{cut}.pkl"
        p.write_bytes(data[:cut])
        with pytest.raises(CheckpointFormatError) as ei:
            load_nvidia_pickle(p)
        assert f"cut{cut}.pkl" in str(ei.value)
    rng = np.random.default_rng(0)
    for i, prefix in enumerate([b"", b"\x80\x04", b"PK\x03\x04"]):
        p = tmp_path / f"garbage{i}.pkl"
        p.write_bytes(prefix + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
        with pytest.raises(CheckpointFormatError):
            load_nvidia_pickle(p)
    p = tmp_path / "plain.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointFormatError, match=r"\(G, D, Gs\)"):
        load_nvidia_pickle(p)
    with pytest.raises(CheckpointFormatError, match="cannot open"):
        load_nvidia_pickle(tmp_path / "missing.pkl")
    assert not marker.exists()
