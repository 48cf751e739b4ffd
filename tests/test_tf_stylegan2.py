"""TensorFlow StyleGAN2 pickles, checked against the official converter's own table.

data/sg2/tf_stylegan2_names.json was written by data/make_tf_stylegan2_names.py from
NVlabs/stylegan2-ada-pytorch ``legacy.py`` (its regex table parsed, nothing of it run): for each
official state-dict key of four generators (config-f 1024 'skip', 32 px 'skip' with conv_clamp
and a 3-layer mapping, 16 px 'orig', 16 px 'resnet'), the TF variable ``legacy.py`` reads and
the operations it applies. The TF side here is built from that file only, so no hand-written
inverse of our own map is involved.
"""

import json
import pickle

import numpy as np
import pytest

from conftest import DATA
from helpers import modules_installed
from pulse_jax import stylegan2, weights
from pulse_jax.weights import tf_stylegan2
from pulse_jax.weights.errors import CheckpointFormatError

NAMES = json.loads((DATA / "sg2" / "tf_stylegan2_names.json").read_text())["cases"]
EXTRA = DATA / "sg2" / "sg2ada_extra_cases.npz"


def apply_ops(x: np.ndarray, ops) -> np.ndarray:
    """What legacy.py does to the TF array ``x`` (ops as the JSON lists them, in order)."""
    for op, arg in ops:
        if op == "index":
            x = x[tuple(arg)]
        elif op == "flip":
            x = np.flip(x, axis=tuple(arg))
        elif op == "transpose":
            x = x.transpose(*arg)
        elif op == "add":
            x = x + arg
        else:
            raise AssertionError(op)
    return x


def undo_ops(y: np.ndarray, ops) -> np.ndarray:
    """The TF array that ``apply_ops`` turns into ``y`` (exact but for the float '+ 1')."""
    for op, arg in reversed(ops):
        if op == "index":
            y = y[(None,) * len(arg)]
        elif op == "flip":
            y = np.flip(y, axis=tuple(arg))
        elif op == "transpose":
            y = y.transpose(np.argsort(arg)) if arg else y.T
        elif op == "add":
            y = y - np.float32(arg)
    return np.array(y, dtype=np.float32, order="C")


def _split(tf_name: str) -> tuple[str, str]:
    """("synthesis" | "mapping" | "G", name within it): legacy.py joins component names."""
    comp, sep, name = tf_name.partition("/")
    return (comp, name) if sep else ("G", tf_name)


def tf_tables(case: str, arrays=None, seed: int = 0) -> dict:
    """``{"synthesis", "mapping", "G"}`` TF variables of ``case``: ``arrays[key]`` written under
    legacy.py's names (random values of the TF shapes when ``arrays`` is None)."""
    rng = np.random.default_rng(seed)
    out = {"synthesis": {}, "mapping": {}, "G": {}}
    for v in NAMES[case]["variables"]:
        comp, name = _split(v["tf_name"])
        value = (rng.standard_normal(v["tf_shape"]).astype(np.float32) if arrays is None
                 else undo_ops(arrays[v["key"]], v["ops"]))
        assert list(value.shape) == v["tf_shape"]
        out[comp][name] = value
    return out


def _nv(tables, static_kwargs) -> dict:
    """What load_nvidia_pickle returns for a G_main holding ``tables``."""
    return {"synthesis": tables["synthesis"], "mapping": tables["mapping"],
            "dlatent_avg": tables["G"]["dlatent_avg"], "network_static_kwargs": static_kwargs}


@pytest.mark.parametrize("case", sorted(NAMES))
def test_names_and_operations_are_legacy_pys(case):
    c = NAMES[case]
    tables = tf_tables(case)
    kwargs, sd = tf_stylegan2.state_dict(_nv(tables, c["tf_static_kwargs"]))
    assert sorted(sd) == sorted(v["key"] for v in c["variables"])
    for v in c["variables"]:
        comp, name = _split(v["tf_name"])
        want = apply_ops(tables[comp][name], v["ops"])
        assert sd[v["key"]].dtype == np.float32 and list(sd[v["key"]].shape) == v["shape"]
        np.testing.assert_array_equal(sd[v["key"]], want, err_msg=v["key"])
    # The constructor arguments legacy.py derives from the kwargs are the official ones.
    assert (stylegan2.StyleGAN2Config.from_init_kwargs(kwargs)
            == stylegan2.StyleGAN2Config.from_init_kwargs(c["init_kwargs"]))
    arch = c["init_kwargs"].get("synthesis_kwargs", {}).get("architecture", "skip")
    assert kwargs["synthesis_kwargs"]["architecture"] == arch


def test_orig_is_told_by_its_lod_names_and_extra_torgbs_are_ignored():
    """An 'orig' network without an architecture kwarg (as TF's own configs write it): its
    ToRGB_lod names make it 'orig'; the lower-resolution ToRGB_lod{k} that TF keeps for
    progressive growing are not part of the PyTorch network."""
    c = NAMES["res16_orig"]
    tables = tf_tables("res16_orig")
    tables["synthesis"]["ToRGB_lod1/weight"] = np.zeros((1, 1, 32, 3), np.float32)
    static = {k: v for k, v in c["tf_static_kwargs"].items() if k != "architecture"}
    kwargs, sd = tf_stylegan2.state_dict(_nv(tables, static))
    assert kwargs["synthesis_kwargs"]["architecture"] == "orig"
    assert sorted(sd) == sorted(v["key"] for v in c["variables"])


@pytest.fixture(scope="module")
def fake_dnnlib():
    from test_nvidia_pickle import _fake_dnnlib
    return _fake_dnnlib()


def write_tf_pickle(path, tables, static_kwargs, mods, protocol=4, drop=()):
    """A TF StyleGAN2 ``(G, D, Gs)`` pickle as NVIDIA's dnnlib writes it (fake dnnlib)."""
    Network = mods["dnnlib.tflib.network"].Network

    def net(name, variables, components=None):
        return Network({"version": 4, "name": name, "static_kwargs": dict(static_kwargs),
                        "components": components or {}, "build_module_src": "raise SystemExit",
                        "build_func_name": name,
                        "variables": [(k, v) for k, v in variables.items() if k not in drop]})

    Gs = net("G_main", dict(tables["G"], lod=np.float32(0)),
             {"synthesis": net("G_synthesis_stylegan2", tables["synthesis"]),
              "mapping": net("G_mapping", tables["mapping"])})
    with modules_installed(mods):
        path.write_bytes(pickle.dumps((Gs, Gs, Gs), protocol=protocol))
    return path


@pytest.mark.parametrize("case", ["res32_clamp_map3", "res16_orig", "res16_resnet_clamp"])
def test_tensorflow_pickle_draws_the_official_images(case, tmp_path, fake_dnnlib):
    """The official weights of a case, written under legacy.py's TF names, imported through
    import_nvidia: the official images (sg2ada_extra_cases.npz) come out."""
    with np.load(EXTRA) as f:
        ref = {k[len(case) + 1:]: f[k] for k in f.files if k.startswith(case + "/")}
    sd = {k[3:]: v for k, v in ref.items() if k.startswith("sd/")}
    path = write_tf_pickle(tmp_path / "tf.pkl", tf_tables(case, sd),
                           NAMES[case]["tf_static_kwargs"], fake_dnnlib, protocol=2)
    assert weights.nvidia_format(path) == "tensorflow"
    gen = weights.import_nvidia(path)
    config = stylegan2.StyleGAN2Config.from_init_kwargs(json.loads(str(ref["init_kwargs"])))
    assert gen.config == config
    got = stylegan2.state_dict_from_params(config, gen.params)
    assert sorted(got) == sorted(sd)
    for v in NAMES[case]["variables"]:
        a, b = np.asarray(got[v["key"]]), sd[v["key"]]
        if ["add", 1] in v["ops"]:  # (b - 1) + 1: two float32 roundings
            assert np.all(np.abs(a - b) <= np.finfo(np.float32).eps * (1 + np.abs(b))), v["key"]
        else:
            np.testing.assert_array_equal(a, b, err_msg=v["key"])
    noises = stylegan2.const_noise(config, gen.params, ref["ws"].shape[0])
    img = np.asarray(gen.synthesize(ref["ws"], noises))
    ref_img = ref["img_const"].transpose(0, 2, 3, 1)
    np.testing.assert_allclose(img, ref_img, atol=1e-5 * np.abs(ref_img).max(), rtol=0)


def test_kwargs_legacy_py_accepts_and_those_it_refuses(tmp_path, fake_dnnlib):
    case = "res32_clamp_map3"
    tables, static = tf_tables(case), NAMES[case]["tf_static_kwargs"]
    accepted = dict(static, conditioning=None, fused_modconv=True, truncation_psi=0.5,
                    truncation_cutoff=None, style_mixing_prob=0.9, structure="auto")
    gen = weights.import_nvidia(write_tf_pickle(tmp_path / "ok.pkl", tables, accepted,
                                                fake_dnnlib))
    assert gen.config == stylegan2.StyleGAN2Config.from_init_kwargs(
        NAMES[case]["init_kwargs"])
    with pytest.raises(CheckpointFormatError, match="unknown TensorFlow StyleGAN2 kwargs.*bogus"):
        weights.import_nvidia(write_tf_pickle(tmp_path / "bad.pkl", tables,
                                              dict(static, bogus=1), fake_dnnlib))
    with pytest.raises(CheckpointFormatError, match="16x16/Conv1/mod_bias"):
        weights.import_nvidia(write_tf_pickle(tmp_path / "cut.pkl", tables, static,
                                              fake_dnnlib, drop={"16x16/Conv1/mod_bias"}))
