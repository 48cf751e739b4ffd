"""The reference's bicubic downscale is the search's default operator, bit for bit: no
degradation, its string, the operator itself, and per-face copies of it (which take the
per-row observation path) give byte-identical results (every field of the Result), on the
tiny test generator and on the shipped model, on one device and sharded over four."""

import dataclasses

import jax
import numpy as np
import pytest

import pulse_jax
from pulse_jax import degrade as D
from pulse_jax import search
from pulse_jax.search import SearchConfig

import fakes

# Every data term and both return_image modes read the operator.
CFG = SearchConfig(steps=4, restarts=2, chunk_steps=2, keep_restart_images=True,
                   loss_str="100*L2+0.05*GEOCROSS+0.5*L1")


def _default(case: str, factor: int, n: int):
    text = f"downscale(factor={factor},kernel=bicubic)"
    return {"string": text, "operator": D.downscale(factor, "bicubic"),
            "per_face": [text] * n, "per_face_operators": [D.downscale(factor)] * n}[case]


def _assert_same(a: search.Result, b: search.Result) -> None:
    for f in dataclasses.fields(search.Result):
        x, y = getattr(a, f.name), getattr(b, f.name)
        xs, ys = jax.tree_util.tree_leaves(x), jax.tree_util.tree_leaves(y)
        assert len(xs) == len(ys), f.name
        for u, v in zip(xs, ys):
            u, v = np.asarray(u), np.asarray(v)
            assert u.dtype == v.dtype and u.shape == v.shape, f.name
            assert u.tobytes() == v.tobytes(), f.name


def _faces(n: int, size: int) -> np.ndarray:
    return np.stack([fakes.face_array(i, size) for i in range(n)]).astype(np.float32) / 255


@pytest.fixture(scope="module")
def tiny():
    return fakes.tiny_generator(), _faces(3, fakes.LR_SIZE)


@pytest.mark.parametrize("case", ["string", "operator", "per_face", "per_face_operators"])
@pytest.mark.parametrize("return_image", ["best", "last"])
def test_default_operator_keeps_its_bits(tiny, case, return_image):
    gen, lr = tiny
    cfg = dataclasses.replace(CFG, return_image=return_image)
    factor = gen.resolution // lr.shape[1]
    want = search.upsample(gen, lr, cfg, seed=2, batch_size=2)   # 3 faces: a padded chunk
    got = search.upsample(gen, lr, cfg, seed=2, batch_size=2,
                          degradation=_default(case, factor, len(lr)))
    _assert_same(want, got)


@pytest.mark.parametrize("loop", ["host", "device"])
def test_default_operator_keeps_its_bits_sharded(tiny, loop):
    gen, lr = tiny
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:4]), ("faces",))
    cfg = dataclasses.replace(CFG, loop=loop)
    factor = gen.resolution // lr.shape[1]
    want = search.upsample(gen, lr, cfg, seed=3, batch_size=1, mesh=mesh)
    for case in ("string", "per_face"):
        got = search.upsample(gen, lr, cfg, seed=3, batch_size=1, mesh=mesh,
                              degradation=_default(case, factor, len(lr)))
        _assert_same(want, got)


@pytest.mark.slow
def test_default_operator_keeps_its_bits_on_the_shipped_model():
    gen = pulse_jax.load_generator(pulse_jax.weights.default_checkpoint_path())
    lr = _faces(2, 8)
    cfg = SearchConfig(steps=3, restarts=2, chunk_steps=3)
    want = search.upsample(gen, lr, cfg, seed=0)
    for case in ("string", "per_face"):
        got = search.upsample(gen, lr, cfg, seed=0, degradation=_default(case, 8, len(lr)))
        _assert_same(want, got)
