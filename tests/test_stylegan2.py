"""StyleGAN2: parity with NVIDIA's StyleGAN2-ADA PyTorch code (fixtures in data/sg2, see
data/README.md), the safe import of ADA pickles, our checkpoint format, and PULSE on it."""

import os
import pickle
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import pulse_jax
from pulse_jax import degrade, stylegan2, weights
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
    assert (c.img_resolution, c.mapping_layers, c.channel_max) == (64, 2, 128)
    assert c.architecture == "skip"
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


@pytest.mark.parametrize("remat", [False, True])
def test_gradient_wrt_wplus_parity(sg2, remat):
    gen, ref = sg2
    noises = _stored_noise(gen, ref, ref["ws"].shape[0])
    loss = lambda ws: jnp.mean(jnp.square(gen.synthesize(ws, noises, remat=remat)))
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
    for bad, match in (({"img_resolution": 48}, "power of two"),
                       ({"conv_clamp": -1.0}, "conv_clamp"),
                       ({"img_resolution": 64, "channel_base": 32}, "no channels")):
        with pytest.raises(ValueError, match=match):
            stylegan2.StyleGAN2Config(**bad)


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


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    import fakes
    from pulse_jax.weights.locate import HOME_ENV
    env = fakes.subprocess_env(cache_dir=tmp_path_factory.mktemp("jax_cache"))
    return dict(env, **{HOME_ENV: str(tmp_path_factory.mktemp("home"))})


@pytest.fixture(scope="module")
def converted(tmp_path_factory, cli_env):
    """`pulse-jax convert --nvidia=<ADA pickle>` into a checkpoint folder."""
    import fakes
    out = tmp_path_factory.mktemp("sg2") / "ckpt"
    p = fakes.run_python(["-m", "pulse_jax.cli", "convert", f"--nvidia={PKL}",
                          f"--output={out}", "--fit_samples=4096"], cli_env)
    assert p.returncode == 0, p.stderr
    return out


def test_convert_command(converted, cli_env):
    """`pulse-jax convert` of the official protocol-3 snapshot (Python 3.7, numpy 1 names)
    gives a checkpoint that draws the official images."""
    import fakes
    gen = weights.load_generator(converted)
    assert gen.config.family == "stylegan2" and gen.gaussian_fit is not None
    assert PKL.read_bytes()[:2] == b"\x80\x03"
    with np.load(NPZ) as f:
        ws, want = f["ws"], _nhwc(f["img_const"])
    img = np.asarray(gen.synthesize(ws, stylegan2.const_noise(gen.config, gen.params, len(ws))))
    np.testing.assert_allclose(img, want, atol=1e-5 * np.abs(want).max(), rtol=0)
    manifest = weights.read_manifest(converted)
    assert manifest["sources"][0]["role"] == "nvidia_pickle"
    assert manifest["gaussian_fit"] == {"computed": True, "num_samples": 4096, "seed": 0}
    # Without --output, a StyleGAN2 pickle is refused (the default folder is FFHQ v1's).
    p = fakes.run_python(["-m", "pulse_jax.cli", "convert", f"--nvidia={PKL}"], cli_env)
    assert p.returncode == 2 and "--output" in p.stderr


@pytest.mark.slow
def test_upsample_command_with_a_converted_checkpoint(converted, cli_env, tmp_path):
    """The main job and the batch pipeline, unchanged, on a StyleGAN2 checkpoint."""
    import fakes
    from pulse_jax import batch
    fakes.write_faces(tmp_path / "input", 2, size=16)
    p = fakes.run_python(["-m", "pulse_jax.cli", "upsample", f"--checkpoint={converted}",
                          "--input_dir=input", "--output_dir=runs", "--config.search.steps=3",
                          "--config.search.restarts=1"], cli_env, cwd=tmp_path)
    assert "Traceback" not in p.stderr, p.stderr
    recs = batch.read_records(tmp_path / "runs")
    assert len(recs) == 2 and all(r["steps"] == 3 and r["factor"] == 4 for r in recs)
    assert p.returncode in (0, 3), p.stderr
    for r in recs:
        assert fakes.png_ok(tmp_path / r["output"]).shape == (64, 64, 3)


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
    src = (f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
           "class Generator: pass\n")
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
    # The search improves on its starts.
    assert (res.restart_best_step > 0).all()


@pytest.mark.slow
def test_search_recovers_its_own_faces():
    """PULSE with its defaults (100 steps, 1 restart) on faces a StyleGAN2 drew itself, x4:
    the search finds HR images that downscale to them within eps, as it does for v1's
    (measured: 8 of 8, l2 1.45e-3 to 1.78e-3 against eps 2e-3). The generator has the
    official random initialization; its Gaussian fit is PULSE's recipe on 20,000 samples."""
    from pulse_jax.generator import random_generator
    from pulse_jax.weights.gaussian_fit import compute_gaussian_fit
    cfg = stylegan2.StyleGAN2Config(img_resolution=32, mapping_layers=2, channel_base=1024,
                                    channel_max=128)
    gen = random_generator(cfg, jax.random.PRNGKey(0))
    fit = compute_gaussian_fit(cfg, gen.params["mapping"], jax.random.PRNGKey(1),
                               num_samples=20_000)
    gen = gen.replace_gaussian_fit(fit["mean"], fit["std"])
    faces = gen.sample(jax.random.PRNGKey(7), 8)
    lr = np.clip(np.asarray(degrade.bicubic_downscale(faces, 4)), 0, 1).astype(np.float32)
    res = pulse_jax.upsample(gen, lr, SearchConfig(), seed=0)
    assert res.success.sum() >= 7, res.l2


# ------------------------------------------------------------------------------------------
# Cases the shared fixture does not cover (data/sg2/sg2ada_extra_cases.npz, official code):
# conv_clamp, other resolutions and channel counts, mapping depth/width/lr multiplier,
# truncation with a cutoff, and the 'orig' and 'resnet' architectures.

EXTRA_CASES = ["res32_clamp_map3", "res16_orig", "res16_resnet_clamp"]


@pytest.fixture(scope="module")
def extra():
    import json
    with np.load(DATA / "sg2" / "sg2ada_extra_cases.npz") as f:
        arrays = {k: f[k] for k in f.files}
    out = {}
    for case in EXTRA_CASES:
        ref = {k[len(case) + 1:]: v for k, v in arrays.items() if k.startswith(case + "/")}
        config = stylegan2.StyleGAN2Config.from_init_kwargs(json.loads(str(ref["init_kwargs"])))
        sd = {k[3:]: v for k, v in ref.items() if k.startswith("sd/")}
        assert set(sd) == set(stylegan2.official_state_dict_shapes(config))
        gen = pulse_jax.Generator(config=config,
                                  params=stylegan2.params_from_state_dict(config, sd))
        out[case] = (gen, ref)
    return out


@pytest.mark.parametrize("case", EXTRA_CASES)
def test_extra_cases_parity(extra, case):
    gen, ref = extra[case]
    c = gen.config
    np.testing.assert_allclose(np.asarray(gen.map(ref["z"])), ref["w"][:, 0], atol=2e-5, rtol=0)
    wt = stylegan2.truncate(jnp.asarray(ref["w"]), gen.params["mapping"]["w_avg"], 0.6, cutoff=3)
    np.testing.assert_allclose(np.asarray(wt), ref["w_trunc06_cut3"], atol=2e-5, rtol=0)
    B = ref["ws"].shape[0]
    for mode, noises in (("const", stylegan2.const_noise(c, gen.params, B)),
                         ("none", stylegan2.noise_zeros(c, B))):
        want = _nhwc(ref[f"img_{mode}"])
        img = np.asarray(gen.synthesize(ref["ws"], noises))
        np.testing.assert_allclose(img, want, atol=1e-5 * np.abs(want).max(), rtol=0)
    if c.conv_clamp is not None:  # the clamp is active in these images
        assert np.abs(ref["img_const"]).max() > c.conv_clamp * 0.99
    noises = stylegan2.const_noise(c, gen.params, B)
    grad = jax.grad(lambda ws: jnp.mean(jnp.square(gen.synthesize(ws, noises))))(
        jnp.asarray(ref["ws"]))
    want = ref["grad_ws"]
    np.testing.assert_allclose(np.asarray(grad), want, atol=1e-5 * np.abs(want).max(), rtol=0)
    fit = weights.compute_gaussian_fit(c, gen.params["mapping"], None, z=ref["fit_z"])
    np.testing.assert_allclose(fit["mean"], ref["fit_mean"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(fit["std"], ref["fit_std"], atol=2e-5, rtol=1e-5)


def test_full_1024_config_f_names_and_shapes():
    """The default config is the official 1024 config-f: same names, shapes and ws count."""
    import json
    official = json.loads((DATA / "sg2" / "sg2ada_1024_state_dict_shapes.json").read_text())
    config = stylegan2.StyleGAN2Config.from_init_kwargs(official["init_kwargs"])
    assert config == stylegan2.StyleGAN2Config()
    assert config.num_layers == official["num_ws"]
    ours = {k: list(v) for k, v in stylegan2.official_state_dict_shapes(config).items()}
    assert ours == official["state_dict_shapes"]


@pytest.mark.slow
def test_full_1024_config_f_forward_and_search_step():
    """Random official-init weights of the full 1024 config-f: a forward pass and a PULSE step."""
    config = stylegan2.StyleGAN2Config()
    gen = pulse_jax.random_generator(config, jax.random.PRNGKey(0))
    gen = gen.replace_gaussian_fit(np.zeros(config.w_dim), np.ones(config.w_dim))
    img = np.asarray(gen.sample(jax.random.PRNGKey(1), 1))
    assert img.shape == (1, 1024, 1024, 3) and np.isfinite(img).all()
    assert img.std() > 1e-3
    lr = np.asarray(degrade.bicubic_downscale(jnp.asarray(img), 32))
    res = pulse_jax.upsample(gen, np.clip(lr, 0, 1), SearchConfig(steps=1, restarts=1,
                                                                  chunk_steps=1), seed=0)
    assert res.hr.shape == (1, 1024, 1024, 3) and np.isfinite(res.l2).all()
    assert res.wplus.shape == (1, config.num_layers, config.w_dim)
    assert len(res.noises) == config.num_layers - 1
