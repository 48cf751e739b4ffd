"""Weight import routes, the Gaussian fit and our checkpoint format."""

import json
import shutil

import jax
import numpy as np
import pytest

import pulse_jax
from pulse_jax.weights import (CheckpointError, compute_gaussian_fit, import_pulse,
                               load_generator, read_manifest, save_generator, source_record)

from helpers import fixture_generator, state_dicts


def _assert_same_generator(a, b):
    assert a.config == b.config
    la, ta = jax.tree_util.tree_flatten(a.params)
    lb, tb = jax.tree_util.tree_flatten(b.params)
    assert ta == tb
    for x, y in zip(la, lb):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    if a.gaussian_fit is None:
        assert b.gaussian_fit is None
    else:
        for k in ("mean", "std"):
            np.testing.assert_array_equal(np.asarray(a.gaussian_fit[k]), np.asarray(b.gaussian_fit[k]))


def test_pt_files_give_the_npz_generator(ref, data_dir):
    from_pt = import_pulse(data_dir / "small_seed0_synthesis.pt", data_dir / "small_seed0_mapping.pt",
                           data_dir / "small_seed0_gaussian_fit_legacy.pt")
    _assert_same_generator(from_pt, fixture_generator(ref))


def test_shipped_fit_known_values(data_dir, ref):
    syn, _, _ = state_dicts(ref)
    gen = import_pulse(data_dir / "small_seed0_synthesis.pt",
                       gaussian_fit_path=data_dir / "pulse_repo_gaussian_fit.pt")
    mean, std = np.asarray(gen.gaussian_fit["mean"]), np.asarray(gen.gaussian_fit["std"])
    np.testing.assert_allclose(mean[:5], [-0.24334, -0.14447, -0.28072, -0.30074, -0.34540], atol=5e-6)
    np.testing.assert_allclose(std[:5], [0.54533, 0.44219, 0.45437, 0.46670, 0.54586], atol=5e-6)
    np.testing.assert_allclose([mean.min(), mean.max(), mean.mean()], [-0.84311, 0.10714, -0.26907], atol=5e-6)
    np.testing.assert_allclose([std.min(), std.max(), std.mean()], [0.31194, 0.77489, 0.48077], atol=5e-6)


def test_gaussian_fit_matches_reference(ref):
    gen = fixture_generator(ref)
    for chunk in (256, 100, 7):  # chunking must not change the result beyond rounding
        fit = compute_gaussian_fit(gen.config, gen.params["mapping"], None, z=ref["gaussian/z"],
                                   chunk_size=chunk)
        np.testing.assert_allclose(fit["mean"], ref["gaussian/mean"], atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(fit["std"], ref["gaussian/std"], atol=1e-4, rtol=1e-5)


def test_gaussian_fit_sampled_in_chunks(ref):
    """Drawing our own z in chunks: progress per chunk, and the fit agrees with one from
    independent samples within sampling error. (The fixture's own fit cannot serve here:
    its z came from the same torch seed-0 stream as its random weights, so its rows are
    aligned with dense0's and its statistics differ from those of fresh samples.)"""
    gen = fixture_generator(ref)
    seen = []
    fit = compute_gaussian_fit(gen.config, gen.params["mapping"], jax.random.PRNGKey(0),
                               num_samples=4000, chunk_size=1000,
                               progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1000, 4000), (2000, 4000), (3000, 4000), (4000, 4000)]
    z = np.random.default_rng(1).standard_normal((16000, 512)).astype(np.float32)
    other = compute_gaussian_fit(gen.config, gen.params["mapping"], None, z=z, chunk_size=4000)
    # Expected mean |difference| is about 0.8 * std * sqrt(1/4000 + 1/16000), ~0.008 here.
    assert np.abs(fit["mean"] - other["mean"]).mean() < 0.02
    np.testing.assert_allclose(fit["std"], other["std"], rtol=0.1)
    assert fit["std"].dtype == np.float32 and fit["mean"].shape == (512,)


def test_checkpoint_round_trip(ref, tmp_path, data_dir):
    gen = fixture_generator(ref)
    src = [source_record(data_dir / "small_seed0_synthesis.pt", "synthesis")]
    path = save_generator(gen, tmp_path / "ckpt", sources=src)
    back = load_generator(path)
    _assert_same_generator(back, gen)
    manifest = read_manifest(path)
    assert manifest["config"] == gen.config.to_dict()
    assert manifest["sources"][0]["sha256"] == src[0]["sha256"] and len(src[0]["sha256"]) == 64
    assert manifest["arrays"]["params/synthesis/4x4/const"]["shape"] == [1, 4, 4, 32]
    # Saving again over it replaces it atomically; no temporary folders remain.
    save_generator(gen, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_checkpoint_float16_and_no_mapping(ref, tmp_path):
    gen = fixture_generator(ref)
    gen = gen.replace(params={"synthesis": gen.params["synthesis"], "mapping": None})
    back = load_generator(save_generator(gen, tmp_path / "half", dtype="float16"))
    assert not back.has_mapping
    a = np.asarray(back.params["synthesis"]["8x8"]["conv1"]["kernel"])
    b = np.asarray(gen.params["synthesis"]["8x8"]["conv1"]["kernel"])
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, b.astype(np.float16).astype(np.float32))
    np.testing.assert_array_equal(np.asarray(back.gaussian_fit["std"]), ref["gaussian/std"])
    with pytest.raises(ValueError, match="no mapping"):
        back.map(np.zeros((1, 512), np.float32))


def test_checkpoint_errors(ref, tmp_path):
    gen = fixture_generator(ref)
    path = save_generator(gen, tmp_path / "c")
    with pytest.raises(CheckpointError, match="does not exist|not a pulse-jax checkpoint"):
        load_generator(tmp_path / "missing")
    bad = tmp_path / "bad"
    shutil.copytree(path, bad)
    data = bytearray((bad / "arrays.npz").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / "arrays.npz").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_generator(bad)
    (bad / "arrays.npz").write_bytes(bytes(data[:1000]))
    with pytest.raises(CheckpointError, match="unreadable"):
        load_generator(bad, verify=False)
    m = json.loads((path / "manifest.json").read_text())
    m["format_version"] = 99
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="newer"):
        load_generator(bad)
    (bad / "manifest.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt manifest"):
        load_generator(bad)
    # A config that does not match the arrays is caught.
    m = json.loads((path / "manifest.json").read_text())
    m["config"]["fmap_max"] = 64
    shutil.copy(path / "arrays.npz", bad / "arrays.npz")
    (bad / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CheckpointError, match="do not match its config"):
        load_generator(bad)


def test_random_generator_shapes_at_1024():
    """The full 1024 configuration initializes with the reference's parameter count."""
    shapes = pulse_jax.stylegan.param_shapes(pulse_jax.GeneratorConfig())
    n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes["synthesis"]))
    assert n == 24110771


def test_nvidia_pickle_to_checkpoint(tmp_path):
    """NVIDIA's pickle route ends in the same checkpoint format and a working generator."""
    from test_nvidia_pickle import write_pickle
    from pulse_jax.weights import import_nvidia
    from pulse_jax.weights.nvidia_pickle import load_nvidia_pickle, nvidia_to_pulse_state_dicts
    path, _ = write_pickle(tmp_path / "karras.pkl", tmp_path / "MARKER")
    gen = import_nvidia(path)
    assert gen.config == pulse_jax.GeneratorConfig(resolution=128, fmap_base=512, fmap_max=32)
    assert gen.has_mapping and gen.gaussian_fit is None
    syn, mapping = nvidia_to_pulse_state_dicts(load_nvidia_pickle(path))
    back = pulse_jax.weights.pulse_state_dict.synthesis_state_dict(gen.config, gen.params["synthesis"])
    for k, v in syn.items():
        np.testing.assert_array_equal(back[k], v, err_msg=k)
    loaded = load_generator(save_generator(gen, tmp_path / "ck", sources=[source_record(path, "nvidia")]))
    _assert_same_generator(loaded, gen)
    assert not (tmp_path / "MARKER").exists()


def test_shipped_default_model(monkeypatch):
    """pulse_jax/checkpoints/utkface64: loads offline (hashes checked), is what its config trains, stays
    under 20 MB, carries the non-commercial licence, and never saw the held-out faces."""
    from experiments.configs import train_utkface64
    monkeypatch.delenv("PULSE_JAX_DEFAULT_CHECKPOINT", raising=False)
    from pulse_jax.weights import default_checkpoint_path
    path = default_checkpoint_path()
    gen = pulse_jax.default_generator()
    from pulse_jax.train import TrainConfig
    tcfg = TrainConfig.from_run_config(train_utkface64.get_config())
    assert gen.config == tcfg.generator
    assert gen.gaussian_fit is not None and gen.params.get("mapping") is not None
    assert sum(f.stat().st_size for f in path.iterdir()) < 20 * 2**20
    manifest = read_manifest(path)
    assert "non-commercial research" in manifest["licence"]
    training = manifest["training"]
    assert training["weights"] == "EMA of G" and training["gaussian_fit_samples"] == 1_000_000
    assert training["images"] == train_utkface64.NUM_FACES - train_utkface64.HELD_OUT
    assert TrainConfig.from_dict(training["train_config"]) == tcfg   # exactly what it trains
    assert training["step"] * training["train_config"]["batch_size"] == training["images_seen"]
    x = np.asarray(gen.sample(jax.random.PRNGKey(0), 2))
    assert x.shape == (2, 64, 64, 3) and np.isfinite(x).all()


def test_ffhq_generator_downloads_converts_once_then_loads(tmp_path):
    """The notebooks' route to FFHQ: the first call fetches the pickle (here from a file://
    address after one that fails), converts it into the cache with a computed fit; the second
    only loads. The pickle is a small one with the real file's structure."""
    from test_nvidia_pickle import write_pickle
    from pulse_jax.weights import fetch
    pkl, _ = write_pickle(tmp_path / "karras.pkl", tmp_path / "MARKER")
    cache = tmp_path / "cache"
    seen = []
    urls = ((tmp_path / "missing.pkl").as_uri(), pkl.as_uri())
    gen = fetch.ffhq_generator(str(cache), urls=urls, log=seen.append, fit_samples=2000,
                               sha256=pulse_jax.files.sha256_file(pkl))  # not NVIDIA's file
    assert any("failed" in m for m in seen) and any("converted into" in m for m in seen)
    assert (cache / "downloads" / fetch.FFHQ_PICKLE).read_bytes() == pkl.read_bytes()
    manifest = pulse_jax.weights.read_manifest(cache / "checkpoints" / "ffhq1024")
    assert manifest["gaussian_fit"] == {"computed": True, "num_samples": 2000, "seed": 0}
    assert [s["role"] for s in manifest["sources"]] == ["nvidia_pickle"]
    seen.clear()
    again = fetch.ffhq_generator(str(cache), urls=(), log=seen.append)
    assert seen == []                                       # no download, no conversion
    _assert_same_generator(again, gen)
    with pytest.raises(OSError, match="could not download"):
        fetch.download([(tmp_path / "nothing").as_uri()], tmp_path / "x.pkl", log=seen.append)
    assert not (tmp_path / "x.pkl").exists() and not (tmp_path / "x.pkl.part").exists()
