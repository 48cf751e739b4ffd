"""Parity on configurations pulse_ref_small_seed0.npz does not cover (tests/data/README.md):
config A (256x256, two fused blocks, batch 3, weights in torch's legacy format) and
config B (the real 1024 architecture, weights rebuilt from a NumPy recipe)."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax import degrade, losses, stylegan
from pulse_jax.stylegan import convs
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.weights import compute_gaussian_fit, from_pulse_state_dicts, import_pulse
from pulse_jax.weights import pulse_state_dict as psd

from helpers import assert_close, nchw, nhwc


@pytest.fixture(scope="module")
def extra(data_dir):
    with np.load(data_dir / "pulse_ref_extra.npz") as f:
        return {k: f[k] for k in f.files}


def _recipe_mapping(config, seed0):
    """Config A's mapping weights: entry k ~ N(0,1) from default_rng(seed0 + k), scaled."""
    sd = {}
    for k, (key, shape) in enumerate(psd.state_dict_shapes(config)["mapping"].items()):
        a = np.random.default_rng(seed0 + k).standard_normal(shape).astype(np.float32)
        sd[key] = a * np.float32(100.0 if key.endswith(".weight") else 10.0)
    return sd


@pytest.fixture(scope="module")
def gen_a(data_dir):
    gen = import_pulse(data_dir / "extra_256_synthesis_legacy.pt")
    mapping = _recipe_mapping(gen.config, 2000)
    return from_pulse_state_dicts(psd.synthesis_state_dict(gen.config, gen.params["synthesis"]),
                                  mapping)


def test_a_config_inferred(gen_a):
    assert gen_a.config == GeneratorConfig(resolution=256, fmap_base=1024, fmap_max=64)
    assert gen_a.config.widths == (64, 64, 64, 64, 32, 16, 8)
    assert gen_a.num_layers == 14


def test_a_mapping_and_fit(gen_a, extra):
    assert_close(gen_a.map(extra["extraA/mapping_io/z"]), extra["extraA/mapping_io/w"],
                 atol=1e-4, rtol=1e-5, what="mapping")
    fit = compute_gaussian_fit(gen_a.config, gen_a.params["mapping"], None,
                               z=extra["extraA/gaussian/z"], chunk_size=100)
    assert_close(fit["mean"], extra["extraA/gaussian/mean"], atol=1e-4, rtol=1e-5, what="mean")
    assert_close(fit["std"], extra["extraA/gaussian/std"], atol=1e-4, rtol=1e-5, what="std")


def test_a_synthesis(gen_a, extra):
    noises = [nhwc(extra[f"extraA/synthesis_io/noise_{i:02d}"]) for i in range(14)]
    raw, state = stylegan.Synthesis(gen_a.config).apply(
        {"params": gen_a.params["synthesis"]}, jnp.asarray(extra["extraA/synthesis_io/dlatents"]),
        noises, mutable=["intermediates"])
    assert_close(nchw(np.asarray(raw)), extra["extraA/synthesis_io/image_raw"], atol=1e-3,
                 rtol=1e-4, what="image_raw")
    for r in (4, 8, 16, 32, 64):
        got = np.moveaxis(np.asarray(state["intermediates"][f"block_{r}x{r}"][0][2]), -1, 0)
        assert_close(got, extra[f"extraA/synthesis_io/block_out_sample2/{r}x{r}"], atol=2e-3,
                     rtol=1e-4, what=f"block {r}")
    jitted = gen_a.synthesize(extra["extraA/synthesis_io/dlatents"], noises)
    assert_close(nchw(np.asarray(jitted)), extra["extraA/synthesis_io/image_raw"], atol=1e-3,
                 rtol=1e-4, what="jit")


@pytest.mark.parametrize("factor", [4, 8])
def test_a_losses(extra, factor):
    p = f"extraA/loss_f{factor}"
    img = jnp.asarray(nhwc((extra["extraA/synthesis_io/image_raw"] + 1) / 2))
    fn = losses.make_loss("100*L2+0.05*GEOCROSS+2*L1", 2e-3,
                          degrade.make_degradation("bicubic", factor))
    total, terms, lr = fn(img, jnp.asarray(nhwc(extra[f"{p}/ref_lr"])),
                          jnp.asarray(extra["extraA/synthesis_io/dlatents"]))
    assert_close(nchw(np.asarray(lr)), extra[f"{p}/gen_im_lr"], atol=5e-4, what="gen_im_lr")
    np.testing.assert_allclose(float(jnp.sum(total)), extra[f"{p}/total"], rtol=1e-5)
    for name in ("L2", "L1", "GEOCROSS"):
        np.testing.assert_allclose(float(jnp.sum(terms[name])), extra[f"{p}/{name}"], rtol=1e-5,
                                   err_msg=name)


# ------------------------------------------------------------------------------------------
# Config B: the full 1024 architecture.

def _recipe_1024(data_dir):
    spec = json.loads((data_dir / "pulse_1024_state_dict_shapes.json").read_text())
    sd = {}
    for k, e in enumerate(spec["synthesis"]["state_dict"]):
        key, shape = e["key"], tuple(e["shape"])
        if key.endswith(".intermediate.kernel"):
            sd[key] = psd.BLUR_KERNEL.copy()
            continue
        a = np.random.default_rng(1000 + k).standard_normal(shape).astype(np.float32)
        if key.endswith((".bias", "noise.weight", ".const")):
            a = a * np.float32(0.1)
        if key in ("blocks.4x4.const", "blocks.4x4.bias"):
            a = a + np.float32(1.0)
        sd[key] = a
    return sd


@pytest.mark.parametrize("upconv", convs.UPCONVS)
def test_1024_forward_matches_reference(data_dir, extra, upconv):
    gen = from_pulse_state_dicts(_recipe_1024(data_dir))
    assert gen.config == GeneratorConfig() and gen.num_layers == 18
    wplus = np.random.default_rng(7).standard_normal((1, 18, 512)).astype(np.float32)
    noises = [nhwc(np.random.default_rng(100 + i).standard_normal((1, 1, r, r)).astype(np.float32))
              for i, (r, _, _) in enumerate(gen.noise_shapes)]
    raw, state = stylegan.Synthesis(gen.config, upconv=upconv).apply(
        {"params": gen.params["synthesis"]}, jnp.asarray(wplus), noises, mutable=["intermediates"])
    raw = nchw(np.asarray(raw))
    assert raw.shape == (1, 3, 1024, 1024)
    for name, sl in (("crop_tl", np.s_[0:64]), ("crop_c", np.s_[480:544]), ("crop_br", np.s_[960:1024])):
        assert_close(raw[:, :, sl, sl], extra[f"extraB/{name}"], atol=1e-3, rtol=1e-4, what=name)
    assert_close(raw.astype(np.float64).mean(axis=(0, 2, 3)), extra["extraB/image_raw_channel_mean"],
                 atol=1e-5, what="channel mean")
    assert_close(np.abs(raw.astype(np.float64)).mean(), extra["extraB/image_raw_abs_mean"],
                 atol=1e-5, what="abs mean")
    blocks = state["intermediates"]
    for r in gen.config.block_resolutions:
        got = np.moveaxis(np.asarray(blocks[f"block_{r}x{r}"][0][0]), -1, 0).astype(np.float64)
        assert_close(got.mean(axis=(1, 2)), extra[f"extraB/block_out_sample0_chmean/{r}x{r}"],
                     atol=2e-5, what=f"chmean {r}")
        if r <= 16:
            assert_close(got, extra[f"extraB/block_out_sample0/{r}x{r}"], atol=2e-3, rtol=1e-4, what=str(r))
        elif r <= 64:
            assert_close(got[:16], extra[f"extraB/block_out_sample0_ch0to15/{r}x{r}"], atol=2e-3,
                         rtol=1e-4, what=str(r))
    img01 = jnp.asarray(nhwc((raw + 1) / 2))
    assert_close(nchw(np.asarray(degrade.bicubic_downscale(img01, 32))), extra["extraB/lr32"],
                 atol=2e-4, what="lr32")
    assert_close(nchw(np.asarray(degrade.bicubic_downscale(img01, 64))), extra["extraB/lr16"],
                 atol=2e-4, what="lr16")
