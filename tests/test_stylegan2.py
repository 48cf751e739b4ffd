"""StyleGAN2: parity with NVIDIA's StyleGAN2-ADA PyTorch code (fixtures in data/sg2, see
data/README.md), the safe import of ADA pickles, our checkpoint format, and PULSE on it."""

import os
import pickle
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pulse_jax
from pulse_jax import degrade, search, stylegan2, weights
from pulse_jax.search import SearchConfig
from pulse_jax.weights.errors import CheckpointFormatError, UnsafePickleError

from conftest import DATA

PKL = DATA / "sg2" / "sg2ada_res64_seed0_gema.pkl"
NPZ = DATA / "sg2" / "sg2ada_res64_seed0.npz"


@pytest.fixture(scope="module")
def sg2():
    """(generator imported from the ADA pickle, the official outputs, NHWC where images)."""
    gen = weights.import_nvidia(PKL)
    with np.load(NPZ) as f:
        ref = {k: f[k] for k in f.files}
    return gen, ref


def _nhwc(x):
    return np.asarray(x).transpose(0, 2, 3, 1)


def _stored_noise(gen, ref, batch):
    """The fixture's own copy of every layer's noise_const, in the official layer order."""
    return [np.broadcast_to(ref[f"noise_const/synthesis.b{r}.{c}.noise_const"][None, :, :, None],
                            (batch, r, r, 1)) for r, c in gen.config.conv_layers]


def test_config_from_the_pickled_constructor_arguments(sg2):
    gen, ref = sg2
    c = gen.config
    assert (c.img_resolution, c.mapping_layers, c.channel_max, c.architecture) == (64, 2, 128, "skip")
    assert gen.num_layers == ref["ws"].shape[1] == 10
    assert len(gen.noise_shapes) == gen.num_layers - 1
    assert [s[0] for s in gen.noise_shapes] == [4, 8, 8, 16, 16, 32, 32, 64, 64]


def test_mapping_and_truncation_parity(sg2):
    gen, ref = sg2
    w = np.asarray(gen.map(ref["z"]))
    np.testing.assert_allclose(w, ref["w"][:, 0], atol=2e-5, rtol=0)
    wt = stylegan2.truncate(jnp.asarray(ref["w"]), gen.params["mapping"]["w_avg"], 0.7)
    np.testing.assert_allclose(np.asarray(wt), ref["w_trunc07"], atol=2e-5, rtol=0)


@pytest.mark.parametrize("mode", ["const", "none"])
def test_synthesis_parity(sg2, mode):
    gen, ref = sg2
    B = ref["ws"].shape[0]
    if mode == "const":
        noises = stylegan2.const_noise(gen.config, gen.params, B)
        np.testing.assert_array_equal(np.asarray(noises[3]), _stored_noise(gen, ref, B)[3])
    else:
        noises = stylegan2.noise_zeros(gen.config, B)
    img = np.asarray(gen.synthesize(ref["ws"], noises))
    want = _nhwc(ref[f"img_{mode}"])
    scale = np.abs(want).max()
    np.testing.assert_allclose(img, want, atol=1e-5 * scale, rtol=0)


def test_gradient_wrt_wplus_parity(sg2):
    gen, ref = sg2
    noises = _stored_noise(gen, ref, ref["ws"].shape[0])
    loss = lambda ws: jnp.mean(jnp.square(gen.synthesize(ws, noises)))
    value, grad = jax.value_and_grad(loss)(jnp.asarray(ref["ws"]))
    np.testing.assert_allclose(float(value), float(ref["loss_sq_mean"]), rtol=1e-5)
    g, want = np.asarray(grad), ref["grad_ws"]
    np.testing.assert_allclose(g, want, atol=1e-5 * np.abs(want).max(), rtol=0)


def test_gaussian_fit_parity(sg2):
    gen, ref = sg2
    fit = weights.compute_gaussian_fit(gen.config, gen.params["mapping"], None, z=ref["fit_z"])
    np.testing.assert_allclose(fit["mean"], ref["fit_mean"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(fit["std"], ref["fit_std"], atol=2e-5, rtol=1e-5)


def test_state_dict_names_round_trip(sg2):
    gen, _ = sg2
    sd = stylegan2.state_dict_from_params(gen.config, gen.params)
    assert {k: v.shape for k, v in sd.items()} == stylegan2.official_state_dict_shapes(gen.config)
    back = stylegan2.params_from_state_dict(gen.config, sd)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back, gen.params)
    sd.pop("synthesis.b8.conv0.weight")
    with pytest.raises(ValueError, match="synthesis.b8.conv0.weight"):
        stylegan2.params_from_state_dict(gen.config, sd)


def test_unsupported_constructor_arguments_are_named():
    base = dict(z_dim=8, w_dim=8, img_resolution=8, img_channels=3)
    with pytest.raises(ValueError, match="conditional"):
        stylegan2.StyleGAN2Config.from_init_kwargs({**base, "c_dim": 10})
    with pytest.raises(ValueError, match="architecture"):
        stylegan2.StyleGAN2Config.from_init_kwargs(
            {**base, "synthesis_kwargs": {"architecture": "deep"}})
    with pytest.raises(ValueError, match="bogus"):
        stylegan2.StyleGAN2Config.from_init_kwargs({**base, "mapping_kwargs": {"bogus": 1}})


# ------------------------------------------------------------------------------------------
# Our checkpoint format and the convert command.


def test_checkpoint_round_trip_records_the_family(sg2, tmp_path):
    gen, ref = sg2
    gen = gen.replace_gaussian_fit(ref["fit_mean"], ref["fit_std"])
    path = weights.save_generator(gen, tmp_path / "ckpt")
    assert weights.read_manifest(path)["family"] == "stylegan2"
    back = weights.load_generator(path)
    assert back.config == gen.config
    jax.tree_util.tree_map(np.testing.assert_array_equal, back.params, gen.params)
    np.testing.assert_array_equal(back.gaussian_fit["std"], ref["fit_std"])


def test_convert_command(tmp_path):
    out = tmp_path / "sg2ckpt"
    cmd = [sys.executable, "-m", "pulse_jax.cli", "convert", f"--nvidia={PKL}",
           f"--output={out}", "--fit_samples=4096"]
    from pulse_jax.weights.locate import HOME_ENV
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), HOME_ENV: str(tmp_path)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    gen = weights.load_generator(out)
    assert gen.config.family == "stylegan2" and gen.gaussian_fit is not None
    assert weights.read_manifest(out)["sources"][0]["role"] == "nvidia_pickle"
    # Without --output, a StyleGAN2 pickle is refused (the default folder is FFHQ v1's).
    proc = subprocess.run(cmd[:5], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode != 0 and "--output" in proc.stderr


# ------------------------------------------------------------------------------------------
# Safety: nothing from an ADA pickle runs.


class _Call:
    """Pickles as a call ``fn(*args)``."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _persistent(fn_body, meta) -> _Call:
    """A call of ``torch_utils.persistence._reconstruct_persistent_obj(meta)`` as ADA pickles
    it (``fn_body`` is what our stand-in module runs, e.g. the official exec of the source)."""
    fn_body.__module__ = "torch_utils.persistence"
    fn_body.__qualname__ = fn_body.__name__ = "_reconstruct_persistent_obj"
    return _Call(fn_body, meta)


def _dumps(obj) -> bytes:
    pkg, mod = types.ModuleType("torch_utils"), types.ModuleType("torch_utils.persistence")
    mod._reconstruct_persistent_obj = obj["G_ema"].fn
    pkg.persistence = mod
    sys.modules.update({"torch_utils": pkg, "torch_utils.persistence": mod})
    try:
        return pickle.dumps(obj, protocol=4)
    finally:
        del sys.modules["torch_utils"], sys.modules["torch_utils.persistence"]


def test_embedded_source_is_never_run(tmp_path):
    marker = tmp_path / "marker"
    src = f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\nclass Generator: pass\n"
    meta = {"type": "class", "version": 6, "module_src": src, "class_name": "Generator",
            "state": {"_parameters": {}, "_buffers": {}, "_modules": {}}}
    path = tmp_path / "evil.pkl"
    path.write_bytes(_dumps({"G_ema": _persistent(lambda m: exec(m["module_src"], {}), meta)}))
    # Proof that the file is armed: the official loader's way (exec the source) writes it.
    exec(src, {})
    assert marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointFormatError, match="evil.pkl"):
        weights.import_nvidia(path)
    assert not marker.exists()


def test_forbidden_globals_and_bad_files_are_one_clear_error(tmp_path):
    marker = tmp_path / "marker"
    evil = tmp_path / "system.pkl"
    # A persistent object whose state calls os.system: refused before anything runs.
    meta = {"type": "class", "version": 6, "module_src": "", "class_name": "Generator",
            "state": {"_parameters": _Call(os.system, f"touch {marker}")}}
    evil.write_bytes(_dumps({"G_ema": _persistent(lambda m: m, meta)}))
    with pytest.raises(UnsafePickleError, match=r"forbidden global .posix\.system"):
        weights.import_nvidia(evil)
    assert not marker.exists()
    cases = {
        "empty.pkl": b"",
        "text.pkl": b"hello, not a pickle",
        "cut.pkl": PKL.read_bytes()[:200_000],
        "other.pkl": pickle.dumps({"x": 1}),
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointFormatError, match=name):
            weights.import_nvidia(tmp_path / name)
    with pytest.raises(ValueError, match="network"):
        weights.import_nvidia(PKL, network="D")


# ------------------------------------------------------------------------------------------
# PULSE on StyleGAN2.

SMALL = SearchConfig(steps=6, restarts=2, chunk_steps=3, eps=2e-3)


@pytest.fixture(scope="module")
def own_targets(sg2):
    gen, ref = sg2
    gen = gen.replace_gaussian_fit(ref["fit_mean"], ref["fit_std"])
    noises = stylegan2.const_noise(gen.config, gen.params, 2)
    w = gen.map(ref["z"][:2])
    wplus = jnp.broadcast_to(w[:, None], (2, gen.num_layers, w.shape[-1]))
    img = jnp.clip((gen.synthesize(wplus, noises) + 1) / 2, 0, 1)
    lr = np.clip(np.asarray(degrade.bicubic_downscale(img, 4)), 0, 1).astype(np.float32)
    return gen, lr


def test_search_is_self_consistent(own_targets):
    gen, lr = own_targets
    res = pulse_jax.upsample(gen, lr, SMALL, seed=1)
    N = lr.shape[0]
    assert res.hr.shape == (N, 64, 64, 3) and res.lr.shape == lr.shape
    assert res.wplus.shape == (N, gen.num_layers, gen.config.w_dim)
    assert len(res.noises) == len(gen.noise_shapes)
    np.testing.assert_allclose(res.l2, np.mean((res.lr - lr) ** 2, axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_array_equal(res.success, res.l2 <= SMALL.eps)
    # The rendering of the returned latents and noise reproduces the returned image.
    img = (np.asarray(gen.synthesize(res.wplus, res.noises)) + 1) / 2
    np.testing.assert_allclose(np.clip(img, 0, 1), res.hr, atol=1e-4)
    # GEOCROSS sees distinct rows: the returned W+ rows differ.
    assert np.abs(np.diff(np.asarray(res.wplus), axis=1)).max() > 1e-3
