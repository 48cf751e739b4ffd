"""Parity of the StyleGAN v1 generator with the PULSE reference fixture."""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pulse_jax import stylegan
from pulse_jax.stylegan import convs
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.weights import pulse_state_dict as psd

from helpers import assert_close, fixture_generator, fixture_noises, nchw, state_dicts

FIXTURE_CONFIG = GeneratorConfig(resolution=128, fmap_base=512, fmap_max=32)


def test_config_derivations():
    cfg = GeneratorConfig()
    assert cfg.num_layers == 18
    assert cfg.widths == (512, 512, 512, 512, 256, 128, 64, 32, 16)
    assert cfg.noise_shapes[0] == (4, 4, 1) and cfg.noise_shapes[-1] == (1024, 1024, 1)
    assert [cfg.is_fused(r) for r in cfg.block_resolutions] == [False] * 5 + [True] * 4
    assert FIXTURE_CONFIG.widths == (32, 32, 32, 32, 16, 8)
    assert FIXTURE_CONFIG.num_layers == 12
    # the smaller-model example of docs/reference.md, "Synthesis network"
    assert GeneratorConfig(resolution=32, fmap_base=256, fmap_max=64).widths == (64, 64, 32, 16)
    for bad in (4, 2048, 100, 0):
        with pytest.raises(ValueError, match="power of two"):
            GeneratorConfig(resolution=bad)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg


def test_infer_config_from_fixture(ref):
    syn, mapping, _ = state_dicts(ref)
    assert psd.infer_config(syn, mapping) == FIXTURE_CONFIG


def test_mapping_parity(ref):
    gen = fixture_generator(ref)
    w = gen.map(ref["mapping_io/z"])
    assert_close(w, ref["mapping_io/w"], atol=1e-4, rtol=1e-5, what="mapping")


@pytest.mark.parametrize("upconv", convs.UPCONVS)
def test_synthesis_parity(ref, upconv):
    gen = fixture_generator(ref)
    wplus = ref["synthesis_io/dlatents"]
    noises = fixture_noises(ref)
    raw, state = stylegan.Synthesis(gen.config, upconv=upconv).apply(
        {"params": gen.params["synthesis"]}, jnp.asarray(wplus), noises,
        mutable=["intermediates"])
    assert_close(nchw(np.asarray(raw)), ref["synthesis_io/image_raw"], atol=1e-3, rtol=1e-4,
                 what="image_raw")
    assert_close(nchw((np.asarray(raw) + 1) / 2), ref["synthesis_io/image01"], atol=5e-4,
                 rtol=1e-4, what="image01")
    blocks = state["intermediates"]
    for res in gen.config.block_resolutions:
        name = f"{res}x{res}"
        got = np.asarray(blocks[f"block_{name}"][0][0])  # sample 0, HWC
        assert_close(np.moveaxis(got, -1, 0), ref[f"synthesis_io/block_out_sample0/{name}"],
                     atol=2e-3, rtol=1e-4, what=name)
    # The jitted public method agrees with the eager module (up to XLA fusion rounding).
    jitted = np.asarray(gen.synthesize(wplus, noises))
    assert_close(nchw(jitted), ref["synthesis_io/image_raw"], atol=1e-3, rtol=1e-4, what="jit")


@pytest.mark.parametrize("shape", [(2, 4, 4, 5, 7), (1, 8, 6, 3, 4)])
def test_subpixel_upsampling_conv_is_the_direct_one(shape):
    """Nearest x2 + 3x3 == four 2x2 phase convs, checked against float64 (ragged H != W too)."""
    b, h, w, cin, cout = shape
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, h, w, cin))
    k = rng.standard_normal((3, 3, cin, cout))
    up = np.pad(x.repeat(2, 1).repeat(2, 2), ((0, 0), (1, 1), (1, 1), (0, 0)))
    want = sum(np.einsum("bhwi,io->bhwo", up[:, dy:dy + 2 * h, dx:dx + 2 * w], k[dy, dx])
               for dy in range(3) for dx in range(3))
    with jax.default_matmul_precision("highest"):
        for f in (convs.upsample_conv_direct, convs.upsample_conv_subpixel):
            got = np.asarray(jax.jit(f)(jnp.asarray(x, jnp.float32), jnp.asarray(k, jnp.float32)))
            assert_close(got, want, atol=1e-5, rtol=1e-5, what=f.__name__)
    with pytest.raises(ValueError, match="3x3"):
        convs.upsample_conv_subpixel(jnp.zeros((1, 4, 4, 2)), jnp.zeros((1, 1, 2, 2)))


@pytest.mark.parametrize("upconv", convs.UPCONVS)
def test_prepared_synthesis_is_the_same_function(ref, upconv):
    """Prepared weights: same image, same gradients w.r.t. W+ and noise as the raw params."""
    gen = fixture_generator(ref)
    wplus = jnp.asarray(ref["synthesis_io/dlatents"])
    noises = [jnp.asarray(n) for n in fixture_noises(ref)]
    prepared = stylegan.prepare_synthesis(gen.config, gen.params["synthesis"], upconv)

    def loss(params, is_prepared, w, n):
        img = stylegan.Synthesis(gen.config, upconv=upconv, prepared=is_prepared).apply(
            {"params": params}, w, n)
        return jnp.sum(jnp.sin(img)), img

    with jax.default_matmul_precision("highest"):
        grad = jax.jit(jax.grad(loss, argnums=(2, 3), has_aux=True), static_argnums=1)
        (gw_raw, gn_raw), img_raw = grad(gen.params["synthesis"], False, wplus, noises)
        (gw, gn), img = grad(prepared, True, wplus, noises)
    assert_close(img, img_raw, atol=2e-5, rtol=1e-5, what="image")
    # Gradients sum thousands of products in another order: compare at their own scale.
    for what, a, b in [("grad wplus", gw, gw_raw)] + [
            (f"grad noise {i}", a, b) for i, (a, b) in enumerate(zip(gn, gn_raw))]:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), what
    with pytest.raises(ValueError, match="prepare_synthesis"):
        stylegan.Synthesis(gen.config, prepared=True).init(jax.random.PRNGKey(0), wplus, noises)


@pytest.mark.parametrize("noise_batch", [3, 1])
def test_epilogue_gradient_is_autodiffs(noise_batch):
    """The written-out backward pass of the layer epilogue equals autodiff of its forward
    formula (every input, a noise map broadcast over the batch too), checked in float64;
    the forward is the same arithmetic, bit for bit."""
    from pulse_jax.stylegan import layers
    rng = np.random.default_rng(0)
    b, h, w, c = 3, 5, 4, 6
    args = [rng.standard_normal(s) for s in
            [(b, h, w, c), (noise_batch, h, w, 1), (c,), (b, 1, 1, c), (b, 1, 1, c)]]
    g = rng.standard_normal((b, h, w, c))

    def plain(x, noise, strength, scale, shift):
        y = layers.instance_norm(layers.lrelu(x + strength * noise), 1e-5)
        return y * (scale + 1.0) + shift

    def vjp(f, dtype):
        out, pull = jax.vjp(f, *[jnp.asarray(a, dtype) for a in args])
        return [np.asarray(out)] + [np.asarray(t) for t in pull(jnp.asarray(g, dtype))]

    fused = lambda *a: layers.epilogue(*a, 1e-5)
    with jax.enable_x64(True):
        want = vjp(plain, jnp.float64)
        got64 = vjp(fused, jnp.float64)
    got32 = vjp(fused, jnp.float32)
    names = ["out", "g x", "g noise", "g strength", "g scale", "g shift"]
    for name, a, b32, ref64 in zip(names, got64, got32, want):
        assert a.shape == ref64.shape, name
        assert np.abs(a - ref64).max() <= 1e-12 * np.abs(ref64).max(), name
        assert np.abs(b32 - ref64).max() <= 1e-5 * np.abs(ref64).max(), name
    x, noise, strength, scale, shift = [jnp.asarray(a, jnp.float32) for a in args]
    assert np.array_equal(np.asarray(layers.epilogue(x, noise, strength, scale, shift, 1e-5)),
                          np.asarray(plain(x, noise, strength, scale, shift)))


@functools.lru_cache(maxsize=None)
def _prepared(cfg):
    # Random arrays of the right shapes (init_params would compile a forward pass for it).
    rng = np.random.default_rng(1)
    params = jax.tree_util.tree_map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape), jnp.float32),
        stylegan.param_shapes(cfg)["synthesis"])
    # jit: eagerly, the pass that records the prepared kernels runs op by op.
    return jax.jit(stylegan.prepare_synthesis, static_argnums=(0, 2))(cfg, params, "subpixel")


def _synthesis_fn(cfg, epilogue):
    """(f, wplus): f(wplus) = (sum of the image squared, image) of a prepared synthesis."""
    prepared = _prepared(cfg)
    wplus = jax.random.normal(jax.random.PRNGKey(2), (2, cfg.num_layers, cfg.dlatent_size))
    noises = stylegan.noise_normal(cfg, jax.random.PRNGKey(3), 2)

    def f(wp):
        img = stylegan.synthesis_prepared(cfg, prepared, wp, noises, upconv="subpixel",
                                          epilogue=epilogue)
        return jnp.sum(img * img), img

    return f, wplus


def _custom_vjps(cfg, epilogue):
    f, wplus = _synthesis_fn(cfg, epilogue)
    return str(jax.make_jaxpr(f)(wplus)).count("custom_vjp_call")


def _grad(cfg, epilogue):
    f, wplus = _synthesis_fn(cfg, epilogue)
    g, img = jax.jit(jax.grad(f, has_aux=True))(wplus)
    return np.asarray(img), np.asarray(g)


def test_synthesis_epilogue_choices():
    """``epilogue``: "fused" writes out every layer's epilogue gradient, "fused_large" only
    from 128x128 up (a 64x64 generator keeps autodiff's bits); the images are identical and
    the gradients agree to float rounding."""
    small = dict(fmap_base=64, fmap_max=16, dlatent_size=16, mapping_layers=1)
    cfg128 = GeneratorConfig(resolution=128, **small)
    convs_only = _custom_vjps(cfg128, "autodiff")  # the prepared convs' own custom_vjps
    assert convs_only > 0
    assert _custom_vjps(cfg128, "fused") - convs_only == 2 * len(cfg128.block_resolutions)
    assert _custom_vjps(cfg128, "fused_large") - convs_only == 2  # the 128x128 block's two
    img_a, g_a = _grad(cfg128, "autodiff")
    img_l, g_l = _grad(cfg128, "fused_large")
    assert np.array_equal(img_a, img_l)
    np.testing.assert_allclose(g_l, g_a, rtol=1e-4, atol=1e-5 * np.abs(g_a).max())
    cfg64 = GeneratorConfig(resolution=64, **small)
    assert _custom_vjps(cfg64, "fused_large") == _custom_vjps(cfg64, "autodiff")
    with pytest.raises(ValueError, match="epilogue must be one of"):
        _custom_vjps(cfg64, "fast")


def test_fused_block_is_flipped_conv(ref):
    """The 128x128 block takes the fused path; the unflipped kernel must NOT match."""
    gen = fixture_generator(ref)
    assert gen.config.is_fused(128) and not gen.config.is_fused(64)
    wrong = GeneratorConfig(resolution=128, fmap_base=512, fmap_max=32, fused_min_resolution=256)
    raw = stylegan.synthesize(wrong, gen.params["synthesis"], ref["synthesis_io/dlatents"],
                              fixture_noises(ref))
    assert np.abs(nchw(np.asarray(raw)) - ref["synthesis_io/image_raw"]).max() > 0.1


def test_batch_independence(ref):
    """Each sample's image does not depend on the batch it is in (up to the float32
    reduction-order rounding that a different batch shape brings on CPU)."""
    gen = fixture_generator(ref)
    wplus = ref["synthesis_io/dlatents"]
    noises = fixture_noises(ref)
    both = np.asarray(gen.synthesize(wplus, noises))
    one = np.asarray(gen.synthesize(wplus[1:], [n[1:] for n in noises]))
    np.testing.assert_allclose(one[0], both[1], atol=1e-4, rtol=1e-5)


def test_remat_matches(ref):
    gen = fixture_generator(ref)
    wplus, noises = ref["synthesis_io/dlatents"], fixture_noises(ref)

    def loss(w, remat):
        return jnp.sum(stylegan.synthesize(gen.config, gen.params["synthesis"], w, noises,
                                           remat=remat) ** 2)

    g0 = jax.grad(loss)(jnp.asarray(wplus), False)
    g1 = jax.grad(loss)(jnp.asarray(wplus), True)
    np.testing.assert_allclose(np.asarray(g1), np.asarray(g0), rtol=1e-4,
                               atol=1e-5 * float(jnp.abs(g0).max()))


def test_input_validation(ref):
    gen = fixture_generator(ref)
    noises = fixture_noises(ref)
    with pytest.raises(ValueError, match=r"wplus must be \[B, 12, 512\]"):
        gen.synthesize(np.zeros((2, 18, 512), np.float32), noises)
    with pytest.raises(ValueError, match="expected 12 noise maps"):
        gen.synthesize(ref["synthesis_io/dlatents"], noises[:-1])
    with pytest.raises(ValueError, match="noise 3"):
        bad = list(noises)
        bad[3] = np.zeros((2, 4, 4, 1), np.float32)
        gen.synthesize(ref["synthesis_io/dlatents"], bad)


def test_1024_state_dict_keys_and_shapes(data_dir):
    """Our key/shape list at 1024 equals the reference's (100 + 16 keys, same order)."""
    spec = json.loads((data_dir / "pulse_1024_state_dict_shapes.json").read_text())
    ours = psd.state_dict_shapes(GeneratorConfig())
    for part in ("synthesis", "mapping"):
        theirs = [(e["key"], tuple(e["shape"])) for e in spec[part]["state_dict"]]
        assert list(ours[part].items()) == theirs
    assert len(ours["synthesis"]) == 100 and len(ours["mapping"]) == 16
    params = stylegan.param_shapes(GeneratorConfig())
    n_syn = sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params["synthesis"]))
    n_map = sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(params["mapping"]))
    assert n_syn == spec["synthesis"]["num_parameters"] == 24110771
    assert n_map == spec["mapping"]["num_parameters"] == 2101248


def test_state_dict_round_trip(ref):
    syn, mapping, _ = state_dicts(ref)
    gen = fixture_generator(ref)
    back = psd.synthesis_state_dict(gen.config, gen.params["synthesis"])
    assert list(back) == list(syn)
    for k in syn:
        np.testing.assert_array_equal(back[k], syn[k], err_msg=k)
    mback = psd.mapping_state_dict(gen.config, gen.params["mapping"])
    for k in mapping:
        np.testing.assert_array_equal(mback[k], mapping[k], err_msg=k)


def test_bad_state_dicts_name_the_key(ref):
    syn, mapping, fit = state_dicts(ref)
    from pulse_jax.weights import from_pulse_state_dicts, StateDictError
    bad = dict(syn)
    bad["blocks.8x8.conv1.bias"] = np.zeros(7, np.float32)
    with pytest.raises(StateDictError, match=r"'blocks\.8x8\.conv1\.bias'.*expected shape \(32,\), found \(7,\)"):
        from_pulse_state_dicts(bad)
    bad = dict(syn)
    del bad["blocks.16x16.epi2.noise.weight"]
    with pytest.raises(StateDictError, match=r"missing keys \['blocks\.16x16\.epi2\.noise\.weight'\]"):
        from_pulse_state_dicts(bad)
    bad = dict(syn, **{"blocks.16x16.extra": np.zeros(3)})
    with pytest.raises(StateDictError, match="unexpected keys.*blocks.16x16.extra"):
        from_pulse_state_dicts(bad)
    bad = dict(syn)
    bad["blocks.8x8.conv0_up.intermediate.kernel"] = np.ones((1, 1, 3, 3), np.float32)
    with pytest.raises(StateDictError, match="blur"):
        from_pulse_state_dicts(bad)
    with pytest.raises(StateDictError, match=r"'dense3\.weight'.*expected shape \(512, 512\)"):
        from_pulse_state_dicts(syn, dict(mapping, **{"dense3.weight": np.zeros((512, 3))}))
    with pytest.raises(StateDictError, match=r"gaussian_fit key 'std'"):
        from_pulse_state_dicts(syn, mapping, {"mean": fit["mean"], "std": fit["std"][:3]})
    with pytest.raises(StateDictError, match="blocks.4x4"):
        from_pulse_state_dicts(mapping)
