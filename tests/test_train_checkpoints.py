"""Training checkpoints on disk: no file over the cap, and a run moved to another folder (as to
another machine) resumes there with the same bits as a run that never moved."""

import os
import shutil

import jax
import numpy as np

import pulse_jax.train as T
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.train import checkpoints as ckpt
from pulse_jax.train import data as data_lib
from pulse_jax.train import state as state_lib

# test_train.py's config (equal, so the compiled step is shared when both files run).
G8 = GeneratorConfig(resolution=8, fmap_base=32, fmap_max=16, dlatent_size=16, mapping_layers=2)
CFG = T.TrainConfig(generator=G8, batch_size=8, g_lr=0.005, d_lr=0.005, r1_gamma=0.1,
                    r1_interval=2, ema_half_life_images=500.0, ema_rampup=0.05)


def _random_state(config, seed=0):
    """A TrainState of random numpy leaves with ``config``'s shapes (nothing compiled)."""
    rng = np.random.default_rng(seed)

    def leaf(s):
        if np.issubdtype(s.dtype, np.floating):
            return rng.normal(size=s.shape).astype(s.dtype)
        return rng.integers(0, 1000, size=s.shape).astype(s.dtype)

    return jax.tree_util.tree_map(leaf, state_lib.state_shapes(config))


def _files(folder):
    return [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs]


def _bitwise_equal(a, b):
    la, lb = [jax.tree_util.tree_leaves(jax.device_get(t)) for t in (a, b)]
    return len(la) == len(lb) and all(
        np.asarray(x).dtype == np.asarray(y).dtype
        and np.asarray(x).tobytes() == np.asarray(y).tobytes() for x, y in zip(la, lb))


def test_no_file_exceeds_the_cap(tmp_path):
    # 256-channel 3x3 kernels (2.25 MiB each) and their Adam moments, against a 256 KiB cap
    cfg = T.TrainConfig(generator=GeneratorConfig(resolution=16, fmap_base=1024, fmap_max=256,
                                                  dlatent_size=64, mapping_layers=2),
                        batch_size=8)
    state = _random_state(cfg)
    cap = 256 * 1024
    largest = max(x.nbytes for x in jax.tree_util.tree_leaves(state))
    assert largest > 8 * cap
    path = T.save_checkpoint(tmp_path, state, cfg, data_position=5, max_file_bytes=cap)
    sizes = [os.path.getsize(f) for f in _files(path)]
    assert max(sizes) <= cap, max(sizes)
    assert sum(sizes) > sum(x.nbytes for x in jax.tree_util.tree_leaves(state)) * 0.8
    loaded, meta = T.load_checkpoint(path, state_lib.state_shapes(cfg))
    assert _bitwise_equal(loaded, state) and meta["data_position"] == 5
    # the default cap is 16 MiB
    assert T.MAX_FILE_BYTES == 16 * 2 ** 20
    path = T.save_checkpoint(tmp_path / "default", state, cfg)
    assert max(os.path.getsize(f) for f in _files(path)) <= T.MAX_FILE_BYTES


def test_a_moved_checkpoint_resumes_with_the_same_bits(tmp_path):
    data = data_lib.Dataset(np.random.default_rng(0).integers(0, 256, (20, 8, 8, 3), np.uint8),
                            [str(i) for i in range(20)], "toy")
    kw = dict(sample_every=0, mesh=T.batch_mesh(1), checkpoint_every=2)

    def stream():
        return data_lib.BatchStream(data, 8, seed=0, flip=True)

    straight = T.train(CFG, stream(), tmp_path / "straight", steps=4, **kw)
    T.train(CFG, stream(), tmp_path / "here", steps=2, **kw)
    # the other machine: the folder arrives under a temporary name and is renamed into place
    there = ckpt.checkpoint_root(tmp_path / "there")
    there.mkdir(parents=True)
    shutil.copytree(ckpt.latest_checkpoint(tmp_path / "here"), there / "incoming")
    shutil.rmtree(tmp_path / "here")
    (there / "incoming").rename(there / "ckpt_000000002")
    starts = []
    moved = T.train(CFG, stream(), tmp_path / "there", steps=4,
                    on_start=lambda step, path: starts.append((step, path.name)), **kw)
    assert starts == [(2, "ckpt_000000002")]
    assert int(moved.step) == 4 and _bitwise_equal(moved, straight)
