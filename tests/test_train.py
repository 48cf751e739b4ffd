"""The trainer: D architecture, losses, data, the train step, exact resume, learning on a toy
set, data parallelism, the export and the entry point. Everything at 8 x 8 with tiny widths;
the in-process tests share one TrainConfig, so the train step compiles once per mesh (the
retrace check builds programs of its own)."""

import dataclasses
import json
import math
import pathlib
import zipfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import fakes
import pulse_jax
from pulse_jax import stylegan
from pulse_jax.search import SearchConfig, upsample
from pulse_jax.stylegan import GeneratorConfig
import pulse_jax.train as T
from pulse_jax.train import checkpoints as ckpt
from pulse_jax.train import data as data_lib
from pulse_jax.train import discriminator as dlib
from pulse_jax.train import losses
from pulse_jax.train import state as state_lib
from pulse_jax.train import step as step_lib

G8 = GeneratorConfig(resolution=8, fmap_base=32, fmap_max=16, dlatent_size=16, mapping_layers=2)
# Lazy R1 (every 2nd step) so that the lax.cond path is exercised too.
CFG = T.TrainConfig(generator=G8, batch_size=8, g_lr=0.005, d_lr=0.005, r1_gamma=0.1,
                    r1_interval=2, ema_half_life_images=500.0, ema_rampup=0.05)
COLOURS = np.array([[230, 40, 40], [40, 40, 230]], np.uint8)


def toy_images(n=64, seed=0, size=8):
    """Solid red or solid blue images, uint8 [n, size, size, 3]."""
    rng = np.random.default_rng(seed)
    return np.ascontiguousarray(np.broadcast_to(
        COLOURS[rng.integers(0, 2, n)][:, None, None, :], (n, size, size, 3)))


@pytest.fixture(scope="module")
def mesh1():
    return T.batch_mesh(1)


def _leaves(tree):
    return jax.tree_util.tree_leaves(jax.device_get(tree))


def _bitwise_equal(a, b):
    la, lb = _leaves(a), _leaves(b)
    assert len(la) == len(lb)
    return all(np.asarray(x).dtype == np.asarray(y).dtype
               and np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


# ----------------------------------------------------------------------------------------
# Discriminator.


@pytest.mark.parametrize("arch", ["orig", "resnet"])
def test_discriminator_widths_from_the_fmap_formula(arch):
    g = GeneratorConfig(resolution=16, fmap_base=64, fmap_max=32, dlatent_size=8)
    d = dlib.DiscriminatorConfig.from_generator(g, architecture=arch)
    assert [d.nf(s) for s in range(4)] == [32, 32, 16, 8]
    shapes = jax.eval_shape(dlib.init_params, d, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)   # random params without compiling the init (slow on CPU)
    p = jax.tree_util.tree_map(lambda t: rng.normal(size=t.shape).astype(np.float32), shapes)
    shapes = {jax.tree_util.keystr(k): v.shape for k, v in
              jax.tree_util.tree_flatten_with_path(shapes)[0]}
    assert shapes["['fromrgb']['kernel']"] == (1, 1, 3, 8)
    assert shapes["['16x16']['conv0']['kernel']"] == (3, 3, 8, 8)
    assert shapes["['16x16']['conv1_down']['kernel']"] == (3, 3, 8, 16)
    assert shapes["['8x8']['conv1_down']['kernel']"] == (3, 3, 16, 32)
    assert shapes["['4x4_conv']['kernel']"] == (3, 3, 33, 32)   # + 1 stddev map
    assert shapes["['4x4_dense0']['kernel']"] == (4 * 4 * 32, 32)
    assert shapes["['4x4_dense1']['kernel']"] == (32, 1)
    assert ("['16x16']['skip_kernel']" in shapes) == (arch == "resnet")
    x = jax.random.uniform(jax.random.PRNGKey(1), (6, 16, 16, 3), minval=-1, maxval=1)
    logits = jax.jit(dlib.discriminate, static_argnums=0)(d, p, x)
    assert logits.shape == (6,) and logits.dtype == jnp.float32
    assert np.all(np.isfinite(logits))


def test_minibatch_stddev_by_hand():
    x = jnp.array([[0, 0], [2, 4], [1, 1], [1, 1]], jnp.float32).reshape(4, 1, 1, 2)
    y = np.asarray(dlib.minibatch_stddev(x, 2))
    assert y.shape == (4, 1, 1, 3)
    np.testing.assert_array_equal(y[..., :2], np.asarray(x))
    # group (0, 1): stds |0-2|/2 = 1 and |0-4|/2 = 2 -> 1.5; group (2, 3): sqrt(1e-8)
    np.testing.assert_allclose(y[:, 0, 0, 2], [1.5, 1.5, 1e-4, 1e-4], rtol=1e-5)
    assert [dlib.mbstd_group(n, 4) for n in (8, 6, 5, 2, 1)] == [4, 3, 1, 2, 1]


# ----------------------------------------------------------------------------------------
# Losses.


def _softplus(v):
    return math.log1p(math.exp(v))


def test_gan_losses_by_hand():
    real = jnp.array([1.0, -2.0])
    fake = jnp.array([0.5, 3.0])
    d = (_softplus(0.5) + _softplus(3.0)) / 2 + (_softplus(-1.0) + _softplus(2.0)) / 2
    g = (_softplus(-0.5) + _softplus(-3.0)) / 2
    np.testing.assert_allclose(losses.d_logistic_loss(real, fake), d, rtol=1e-6)
    np.testing.assert_allclose(losses.g_nonsaturating_loss(fake), g, rtol=1e-6)
    # -log(sigmoid) form of the G loss
    np.testing.assert_allclose(g, -np.mean(np.log(1 / (1 + np.exp(-np.array([0.5, 3.0]))))),
                               rtol=1e-6)


def test_r1_on_simple_functions():
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 2, 2, 1))
    w = jnp.arange(4.0).reshape(1, 2, 2, 1)
    # linear D: grad = w for every sample -> penalty = sum(w^2) = 0 + 1 + 4 + 9
    logits, pen = losses.r1_penalty(lambda v: jnp.sum(v * w, axis=(1, 2, 3)), x)
    np.testing.assert_allclose(pen, [14.0] * 3, rtol=1e-6)
    np.testing.assert_allclose(logits, np.sum(np.asarray(x * w), axis=(1, 2, 3)), rtol=1e-6)
    # quadratic D: grad = x -> penalty = |x|^2 per sample
    _, pen = losses.r1_penalty(lambda v: 0.5 * jnp.sum(v ** 2, axis=(1, 2, 3)), x)
    np.testing.assert_allclose(pen, np.sum(np.asarray(x) ** 2, axis=(1, 2, 3)), rtol=1e-6)
    np.testing.assert_allclose(losses.r1_loss(pen, 10.0, interval=4),
                               0.5 * 10 * 4 * np.mean(np.asarray(pen)), rtol=1e-6)
    # differentiable w.r.t. D's parameters (the double backward R1 needs)
    def loss(a):
        return losses.r1_loss(losses.r1_penalty(lambda v: a * jnp.sum(v ** 2, (1, 2, 3)), x)[1], 1.0)
    # penalty = |2 a x|^2 -> loss = 0.5 * 4 a^2 mean|x|^2 -> d/da = 4 a mean|x|^2
    np.testing.assert_allclose(jax.grad(loss)(1.5), 4 * 1.5 * np.mean(np.sum(np.asarray(x) ** 2,
                                                                             (1, 2, 3))), rtol=1e-5)


# ----------------------------------------------------------------------------------------
# Data.


def _write_image_tree(folder: pathlib.Path):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    (folder / "sub").mkdir()
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / "b.jpg")
    Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8), "L").save(folder / "c.png")
    rgba = rng.integers(0, 256, (8, 8, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(folder / "d.png")
    Image.fromarray(rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)).save(folder / "e.png")
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(folder / "sub" / "f.png")
    (folder / "bad.png").write_bytes(b"not an image")
    (folder / "notes.txt").write_text("ignored")


def test_data_from_folder_and_zip(tmp_path):
    folder = tmp_path / "imgs"
    _write_image_tree(folder)
    zpath = tmp_path / "imgs.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.writestr("imgs/", "")
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder).as_posix())
        zf.writestr("__MACOSX/._a.png", b"resource fork")
    a = data_lib.load_images(folder, 8)
    b = data_lib.load_images(zpath, 8)
    assert a.names == b.names == ["a.png", "b.jpg", "c.png", "d.png", "e.png", "sub/f.png"]
    assert a.skipped == b.skipped == ["bad.png"]
    assert a.images.shape == (6, 8, 8, 3) and a.images.dtype == np.uint8
    np.testing.assert_array_equal(a.images, b.images)
    assert a.resized == 1                                   # e.png: cropped 12x12, resized
    np.testing.assert_array_equal(a.images[0], np.asarray(Image.open(folder / "a.png")))
    gray = np.asarray(Image.open(folder / "c.png"))
    np.testing.assert_array_equal(a.images[2], np.stack([gray] * 3, -1))
    np.testing.assert_array_equal(a.images[3], np.asarray(Image.open(folder / "d.png"))[..., :3])
    c = data_lib.load_images(folder, 4, max_images=2)      # resize everything
    assert c.images.shape == (2, 4, 4, 3) and c.resized == 2
    assert data_lib.load_images(folder).resolution == 8    # the first image's size
    with pytest.raises(FileNotFoundError):
        data_lib.load_images(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no decodable images"):
        data_lib.load_images(tmp_path / "empty")


def test_batch_stream_order_resume_and_flips():
    n = 10
    imgs = np.stack([np.full((2, 2, 3), i, np.uint8) for i in range(n)])
    imgs[:, :, 0, 0] += 100                                 # left column marks flips
    s = data_lib.BatchStream(imgs, 4, seed=3)
    batches = [next(s) for _ in range(5)]                   # 20 images = 2 epochs
    ids = np.concatenate(batches)[:, 0, 1, 1]
    assert sorted(ids[:10]) == list(range(n)) and sorted(ids[10:]) == list(range(n))
    assert list(ids[:10]) != list(ids[10:])                 # reshuffled per epoch
    assert s.position == 20
    # a stream resumed at a position continues exactly (here across an epoch boundary)
    r = data_lib.BatchStream(imgs, 4, seed=3, position=8)
    np.testing.assert_array_equal(next(r), batches[2])
    np.testing.assert_array_equal(next(r), batches[3])
    other = data_lib.BatchStream(imgs, 4, seed=4)
    assert not np.array_equal(np.concatenate([next(other) for _ in range(3)]),
                              np.concatenate(batches[:3]))
    f = data_lib.BatchStream(imgs, 5, seed=0, flip=True)
    out = np.concatenate([next(f) for _ in range(40)])
    flipped = out[:, 0, 1, 0] >= 100                        # the mark moved right
    for x, fl in zip(out, flipped):
        i = x[0, 1 if fl else 0, 1]
        np.testing.assert_array_equal(x, imgs[i][:, ::-1] if fl else imgs[i])
    assert 0.35 < flipped.mean() < 0.65
    np.testing.assert_array_equal(data_lib.BatchStream(imgs, 5, seed=0, flip=True,
                                                       position=35).batch_at(35), out[35:40])


# ----------------------------------------------------------------------------------------
# Style mixing, EMA.


@pytest.mark.slow
def test_style_mixing_changes_only_layers_past_the_crossover():
    L = G8.num_layers                                       # 4: two per block (4x4, 8x8)
    w1, w2 = jnp.ones((2, 16)), jnp.full((2, 16), 2.0)
    wp = np.asarray(step_lib.mix_wplus(w1, w2, jnp.array([1, L]), L))
    np.testing.assert_array_equal(wp[0, :1], 1.0)
    np.testing.assert_array_equal(wp[0, 1:], 2.0)
    np.testing.assert_array_equal(wp[1], 1.0)

    params = T.init_state(CFG).g_params
    z1, z2 = jax.random.normal(jax.random.PRNGKey(1), (2, 3, 16))
    noises = stylegan.noise_normal(G8, jax.random.PRNGKey(2), 3)
    cut = jnp.array([L, 2, 1])          # none; at the 8x8 block; inside the 4x4 block

    @jax.jit
    def mixed_blocks(z1, z2, cut):
        w = stylegan.Mapping(G8).apply({"params": params["mapping"]}, jnp.concatenate([z1, z2]))
        wplus = step_lib.mix_wplus(w[:3], w[3:], cut, L)
        img, inter = stylegan.Synthesis(G8).apply({"params": params["synthesis"]}, wplus,
                                                  noises, mutable=["intermediates"])
        return img, [inter["intermediates"][f"block_{r}x{r}"][0] for r in (4, 8)]

    img, (b4, b8) = mixed_blocks(z1, z2, cut)
    ref_img, (r4, r8) = mixed_blocks(z1, z1, cut)             # w2 = w1: no mixing at all
    np.testing.assert_array_equal(img[0], ref_img[0])         # cutoff L: w2 unused
    np.testing.assert_array_equal(b4[1], r4[1])               # crossover at 8x8: 4x4 kept
    assert not np.allclose(b8[1], r8[1]) and not np.allclose(img[1], ref_img[1])
    assert not np.allclose(b4[2], r4[2])                      # crossover inside 4x4
    # the trainer's generator mixes exactly so
    out = jax.jit(step_lib.run_generator, static_argnums=0)(CFG, params, z1, z2, cut, noises)
    np.testing.assert_allclose(out, img, rtol=1e-6, atol=1e-6)

    _, _, cutoff, _ = step_lib.draw_latents(CFG, jax.random.PRNGKey(3), 4000)   # prob 0.9
    cutoff = np.asarray(cutoff)
    assert 0.87 < np.mean(cutoff < L) < 0.93
    assert set(cutoff[cutoff < L]) == set(range(1, L))
    _, _, never, _ = step_lib.draw_latents(T.TrainConfig(generator=G8, batch_size=2,
                                                  style_mixing_prob=0.0), jax.random.PRNGKey(3), 100)
    assert np.all(np.asarray(never) == L)


def test_ema_math():
    cfg = T.TrainConfig(generator=G8, batch_size=8, ema_half_life_images=1000.0)
    np.testing.assert_allclose(step_lib.ema_beta(cfg, 0), 0.5 ** (8 / 1000), rtol=1e-6)
    ramp = T.TrainConfig(generator=G8, batch_size=8, ema_half_life_images=1000.0, ema_rampup=0.05)
    assert float(step_lib.ema_beta(ramp, 0)) == 0.0                # first update copies the params
    np.testing.assert_allclose(step_lib.ema_beta(ramp, 10), 0.5 ** (8 / (10 * 8 * 0.05)), rtol=1e-6)
    np.testing.assert_allclose(step_lib.ema_beta(ramp, 10_000), 0.5 ** (8 / 1000), rtol=1e-6)
    off = T.TrainConfig(generator=G8, batch_size=8, ema_half_life_images=0.0)
    assert float(step_lib.ema_beta(off, 5)) == 0.0
    # after k updates with a constant target, ema = p + (e0 - p) beta^k
    e, p, beta = {"a": jnp.float32(1.0)}, {"a": jnp.float32(3.0)}, jnp.float32(0.9)
    for _ in range(5):
        e = step_lib.ema_update(e, p, beta)
    np.testing.assert_allclose(e["a"], 3.0 + (1.0 - 3.0) * 0.9 ** 5, rtol=1e-6)


# ----------------------------------------------------------------------------------------
# The train step.


@pytest.mark.slow
def test_step_runs_losses_finite_no_retrace(mesh1, monkeypatch):
    # A config of its own, so that make_train_step builds fresh programs around a train_step
    # that may be traced three times (R1 chosen in the graph; with and without R1 chosen on
    # the host): a fourth trace is a retrace and raises.
    cfg = dataclasses.replace(CFG, seed=1)
    chex.clear_trace_counter()
    monkeypatch.setattr(step_lib, "train_step", chex.assert_max_traces(step_lib.train_step, n=3))
    step = T.make_train_step(cfg, mesh1)
    data = toy_images(16)
    state = T.replicate(T.init_state(cfg), mesh1)
    seen = []
    for i in range(3):
        state, m = step(state, T.shard_batch(data[8 * (i % 2): 8 * (i % 2) + 8], mesh1))
        m = jax.device_get(m)
        seen.append(m)
        assert set(m) == {"d_loss", "g_loss", "r1_penalty", "real_logit", "fake_logit",
                          "d_accuracy"}
        assert all(np.isfinite(v) for v in m.values()), m
    assert int(state.step) == 3
    assert seen[0]["r1_penalty"] > 0 and seen[1]["r1_penalty"] == 0 and seen[2]["r1_penalty"] > 0
    # the D at init knows nothing: its first loss is near 2 log 2
    assert abs(seen[0]["d_loss"] - 2 * math.log(2)) < 0.7
    # Host-side dispatch (what train() uses): the same R1 pattern, from separate programs.
    state = T.replicate(T.init_state(cfg), mesh1)
    pens = []
    for i in range(3):
        state, m = step(state, T.shard_batch(data[8 * (i % 2): 8 * (i % 2) + 8], mesh1), i)
        pens.append(float(m["r1_penalty"]))
    assert pens[0] > 0 and pens[1] == 0 and pens[2] > 0
    np.testing.assert_allclose(pens[0], seen[0]["r1_penalty"], rtol=1e-4)
    with pytest.raises(ValueError, match="batch"):
        T.make_train_step(T.TrainConfig(generator=G8, batch_size=6), T.batch_mesh(4))


def test_ema_inside_the_step(mesh1):
    step = T.make_train_step(CFG, mesh1)
    s0 = T.init_state(CFG)
    # an EMA that differs from the params, at a step where beta is far from 0 and 1
    s0 = s0.replace(step=jnp.int32(1000),
                    g_ema=jax.tree_util.tree_map(lambda x: 0.5 * x + 0.1, s0.g_params))
    old_ema = jax.device_get(s0.g_ema)
    s1, _ = step(T.replicate(s0, mesh1), T.shard_batch(toy_images(8), mesh1))
    beta = float(step_lib.ema_beta(CFG, 1000))
    assert 0.9 < beta < 0.999
    want = jax.tree_util.tree_map(lambda e, p: p + (e - p) * np.float32(beta), old_ema,
                                  jax.device_get(s1.g_params))
    for a, b in zip(_leaves(s1.g_ema), jax.tree_util.tree_leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_resume_is_bit_identical(tmp_path, mesh1):
    data = data_lib.Dataset(toy_images(20), [str(i) for i in range(20)], "toy")
    kw = dict(sample_every=0, mesh=mesh1, keep_checkpoints=2)
    sa = data_lib.BatchStream(data, 8, seed=0, flip=True)
    a = T.train(CFG, sa, tmp_path / "a", steps=5, checkpoint_every=0, **kw)
    sb = data_lib.BatchStream(data, 8, seed=0, flip=True)
    b2 = T.train(CFG, sb, tmp_path / "b", steps=2, checkpoint_every=2, **kw)
    assert int(b2.step) == 2 and sb.position == 16
    calls = []
    sb2 = data_lib.BatchStream(data, 8, seed=0, flip=True)   # a fresh process would
    b = T.train(CFG, sb2, tmp_path / "b", steps=5, checkpoint_every=2,
                on_start=lambda step, path: calls.append((step, path.name)), **kw)
    assert calls == [(2, "ckpt_000000002")]
    assert sb2.position == sa.position == 40
    assert int(a.step) == int(b.step) == 5
    assert _bitwise_equal(a, b)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path / "b")] == [4, 5]   # keep 2
    loaded, meta = T.load_checkpoint(T.latest_checkpoint(tmp_path / "b"), state_lib.state_shapes(CFG))
    assert meta["step"] == 5 and meta["data_position"] == 40
    assert _bitwise_equal(loaded, a)
    assert T.TrainConfig.from_dict(meta["train_config"]) == CFG


def test_time_budget_stops_with_a_checkpoint_and_resumes(tmp_path, mesh1):
    data = data_lib.Dataset(toy_images(20), [str(i) for i in range(20)], "toy")
    kw = dict(sample_every=3, mesh=mesh1, checkpoint_every=3, keep_checkpoints=5)
    # a budget already spent stops after the first step, saving where it stopped
    calls = []
    s1 = T.train(CFG, data_lib.BatchStream(data, 8), tmp_path, steps=6, max_seconds=1e-9,
                 on_step=lambda step, metrics, last: calls.append((step, last)), **kw)
    assert int(s1.step) == 1 and calls == [(1, True)]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1]
    assert sorted(p.name for p in (tmp_path / "samples").iterdir()) == [
        "000000000.png", "000000001.png"]
    s2 = T.train(CFG, data_lib.BatchStream(data, 8), tmp_path, steps=6, max_seconds=1e-9, **kw)
    assert int(s2.step) == 2
    # a generous budget runs to the end
    calls.clear()
    s3 = T.train(CFG, data_lib.BatchStream(data, 8), tmp_path, steps=6, max_seconds=3600,
                 on_step=lambda step, metrics, last: calls.append((step, last)), **kw)
    assert int(s3.step) == 6 and calls == [(3, False), (4, False), (5, False), (6, True)]
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [1, 2, 3, 6]


def test_checkpoint_files_atomic_and_checked(tmp_path):
    state = T.init_state(CFG)
    root = ckpt.checkpoint_root(tmp_path)
    root.mkdir(parents=True)
    crashed = root / "ckpt_000000007.orbax-checkpoint-tmp-1234"   # a save killed midway
    (crashed / "state").mkdir(parents=True)
    (root / "ckpt_000000009").mkdir()                       # incomplete: no commit record
    for k in (1, 2, 3):
        T.save_checkpoint(tmp_path, state.replace(step=jnp.int32(k)), CFG, data_position=8 * k,
                          keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    assert not crashed.exists()
    with pytest.raises(ValueError, match="not JSON"):
        T.save_checkpoint(tmp_path, state.replace(step=jnp.int32(4)), CFG,
                          extra={"unwritable": object()}, keep=2)
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    assert sorted(p.name for p in root.iterdir()) == [
        "ckpt_000000002", "ckpt_000000003", "ckpt_000000009"]   # nothing half-written
    assert T.latest_checkpoint(tmp_path).name == "ckpt_000000003"
    T.save_checkpoint(tmp_path, state.replace(step=jnp.int32(3)), CFG, data_position=99)
    _, meta = T.load_checkpoint(root / "ckpt_000000003", state_lib.state_shapes(CFG))
    assert meta["data_position"] == 99                      # overwritten in place
    assert [s for s, _ in ckpt.list_checkpoints(tmp_path)] == [2, 3]
    other = T.TrainConfig(generator=GeneratorConfig(resolution=8, fmap_base=32, fmap_max=16,
                                                    dlatent_size=8, mapping_layers=2),
                          batch_size=8)
    with pytest.raises(ValueError, match="differs|needs"):
        T.load_checkpoint(root / "ckpt_000000003", state_lib.state_shapes(other))
    with pytest.raises(ValueError, match="another architecture|needs"):
        T.restore_or_init(other, tmp_path, T.batch_mesh(1))
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        T.load_checkpoint(root / "ckpt_000000009", state_lib.state_shapes(CFG))
    old = tmp_path / "old" / "checkpoints" / "ckpt_000000005"   # the former npz format
    old.mkdir(parents=True)
    (old / "state.npz").write_bytes(b"")
    with pytest.raises(ValueError, match="format-1"):
        T.restore_or_init(CFG, tmp_path / "old", T.batch_mesh(1))


def test_learns_on_a_toy_dataset(mesh1):
    """Solid red / solid blue 8x8 images: after 300 steps the EMA samples are far flatter and
    far closer to the two colours than at init (measured margins: ratios ~0.3, bound 0.5)."""
    step = T.make_train_step(CFG, mesh1)
    colours = COLOURS / 127.5 - 1

    def stats(params):
        x = T.sample_images(CFG, params, 64, seed=1) * 2 - 1          # [-1, 1]
        spatial_std = x.std(axis=(1, 2)).mean()
        dist = np.linalg.norm(x[..., None, :] - colours, axis=-1).min(-1).mean()
        return spatial_std, dist

    state = T.replicate(T.init_state(CFG), mesh1)
    std0, dist0 = stats(state.g_ema)
    stream = data_lib.BatchStream(toy_images(64), 8, seed=0)
    for _ in range(300):
        state, m = step(state, T.shard_batch(next(stream), mesh1))
    std1, dist1 = stats(state.g_ema)
    assert std0 > 0.4 and dist0 > 1.0
    assert std1 < 0.5 * std0, (std0, std1)
    assert dist1 < 0.5 * dist0, (dist0, dist1)


@pytest.mark.slow
def test_data_parallel_matches_one_device(mesh1):
    mesh4 = T.batch_mesh(4)
    assert mesh4.size == 4 and mesh4.axis_names == ("batch",)
    s0 = jax.device_get(T.init_state(CFG))
    batch = toy_images(8)
    s1, m1 = T.make_train_step(CFG, mesh1)(T.replicate(s0, mesh1), T.shard_batch(batch, mesh1))
    s4, m4 = T.make_train_step(CFG, mesh4)(T.replicate(s0, mesh4), T.shard_batch(batch, mesh4))
    leaf = jax.tree_util.tree_leaves(s4.g_params)[0]
    assert leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 4
    for k in m1:
        np.testing.assert_allclose(m4[k], m1[k], rtol=1e-5, atol=1e-6, err_msg=k)
    # Adam's first moment after one step with b1 = 0 is the gradient: compare gradients ...
    grads1 = _leaves((s1.g_opt_state[0].mu, s1.d_opt_state[0].mu))
    grads4 = _leaves((s4.g_opt_state[0].mu, s4.d_opt_state[0].mu))
    for a, b in zip(grads4, grads1):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    # ... and the parameters wherever the gradient is not rounding noise: Adam's first step
    # is lr * sign(g), so a parameter whose gradient is ~0 in theory (the 4x4 input bias,
    # which instance norm cancels) moves by +-lr depending on the summation order.
    params1, params4 = _leaves((s1.g_params, s1.d_params)), _leaves((s4.g_params, s4.d_params))
    for a, b, g in zip(params4, params1, grads1):
        sure = np.abs(g) > 1e-4
        np.testing.assert_allclose(a[sure], b[sure], rtol=1e-6, atol=1e-6)


def test_mixed_precision_forward():
    bf = T.TrainConfig(generator=G8, batch_size=2, compute_dtype="bfloat16")
    st = T.init_state(CFG)
    z1, z2, cut, noises = step_lib.draw_latents(bf, jax.random.PRNGKey(0), 2)
    run_g = jax.jit(step_lib.run_generator, static_argnums=0)
    x = run_g(bf, st.g_params, z1, z2, cut, noises)
    x32 = run_g(CFG, st.g_params, z1, z2, cut, noises)
    assert x.dtype == jnp.float32 and np.all(np.isfinite(x))
    assert 0 < np.abs(np.asarray(x) - np.asarray(x32)).max() < 0.2
    logits = jax.jit(step_lib.run_discriminator, static_argnums=0)(bf, st.d_params, x)
    assert logits.dtype == jnp.float32 and np.all(np.isfinite(logits))
    with pytest.raises(ValueError, match="compute_dtype"):
        T.TrainConfig(generator=G8, compute_dtype="float16")


# ----------------------------------------------------------------------------------------
# Export and entry point.


def test_export_loads_and_searches(tmp_path):
    state = T.init_state(CFG).replace(step=jnp.int32(7))
    gen = T.export_generator(state, CFG, tmp_path / "gen", fit_samples=2000,
                             licence="toy licence", training={"data": "toy"})
    loaded = pulse_jax.load_generator(tmp_path / "gen")
    assert loaded.config == G8
    assert _bitwise_equal(loaded.params, gen.params)
    np.testing.assert_array_equal(loaded.gaussian_fit["mean"], gen.gaussian_fit["mean"])
    ema = jax.device_get(state.g_ema)
    for a, b in zip(_leaves(loaded.params), jax.tree_util.tree_leaves(ema)):
        np.testing.assert_array_equal(a, np.asarray(b).astype(np.float16).astype(np.float32))
    manifest = json.loads((tmp_path / "gen" / "manifest.json").read_text())
    assert manifest["licence"] == "toy licence"
    assert manifest["training"]["step"] == 7 and manifest["training"]["data"] == "toy"
    assert manifest["training"]["images_seen"] == 56
    assert all(v["dtype"] == "float16" for k, v in manifest["arrays"].items()
               if k.startswith("params/"))
    lr = np.full((2, 4, 4, 3), 0.5, np.float32)
    res = upsample(loaded, lr, SearchConfig(steps=2, chunk_steps=1, num_trainable_noise_layers=2))
    assert res.hr.shape == (2, 8, 8, 3) and np.all(np.isfinite(res.l2))


@pytest.mark.slow
def test_entry_point_runs_and_resumes(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    for i, x in enumerate(toy_images(12, size=16)):          # resized to 8x8 on load
        Image.fromarray(x).save(folder / f"{i:02d}.png")
    env = fakes.subprocess_env(cache_dir=tmp_path / "jax_cache")
    env["TQDM_DISABLE"] = "0"

    def run(workdir, steps, *extra):
        p = fakes.run_python(["experiments/train.py", "--config=experiments/configs/train_tiny.py",
                              f"--workdir={workdir}", f"--config.data.path={folder}",
                              f"--config.steps={steps}", *extra], env, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        return p.stderr

    w = tmp_path / "run"
    err = run(w, 2)
    assert "img/s" in err and "resumed" not in err
    err = run(w, 4)
    assert "resumed from" in err and "ckpt_000000002" in err
    assert [s for s, _ in ckpt.list_checkpoints(w)] == [2, 4]
    assert sorted(p.name for p in (w / "samples").iterdir()) == [
        "000000000.png", "000000002.png", "000000004.png"]
    assert Image.open(w / "samples" / "000000004.png").size == (32, 32)   # 4 x 4 grid of 8x8
    gen = pulse_jax.load_generator(w / "generator")
    assert gen.config.resolution == 8 and gen.gaussian_fit is not None
    assert json.loads((w / "generator" / "manifest.json").read_text())["training"]["step"] == 4
    # an uninterrupted 4-step run in another process gives the same bits (logged, not a bar)
    err = run(tmp_path / "straight", 4, "--config.progress=False", "--config.log_every=2")
    assert "step 4  32 img" in err and "img/s" in err and "%|" not in err
    paths = [d / "checkpoints" / "ckpt_000000004" for d in (w, tmp_path / "straight")]
    tiny = T.TrainConfig.from_dict(ckpt.read_meta(paths[0])["train_config"])
    ra, rb = [T.load_checkpoint(p, state_lib.state_shapes(tiny))[0] for p in paths]
    assert _bitwise_equal(ra, rb)
