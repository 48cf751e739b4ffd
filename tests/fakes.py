"""Fakes for tests that need a generator, a checkpoint or input faces, never real weights.

``tiny_generator()`` is a 32 x 32 StyleGAN (fmap 16, D = 32, 2 mapping layers) with a Gaussian
fit of 2000 mapping samples and small random noise strengths and biases (the reference
initializes them to zero, which would make noise irrelevant). ``save_tiny_checkpoint`` writes it
with :func:`pulse_jax.save_generator`. ``write_faces`` writes smooth random 8 x 8 PNG faces (the
generator's x4 LR size) and ``write_bad_inputs`` one file of each kind the batch must refuse.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

import pulse_jax
from pulse_jax.weights import compute_gaussian_fit

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY_CONFIG = pulse_jax.GeneratorConfig(resolution=32, fmap_base=64, fmap_max=16,
                                        dlatent_size=32, mapping_layers=2)
LR_SIZE = 8  # x4 for the 32 x 32 generator


@functools.lru_cache(maxsize=None)
def tiny_generator(seed: int = 0, perturb: float = 0.1) -> pulse_jax.Generator:
    """The tiny test generator, with a Gaussian fit and non-zero noise strengths and biases."""
    key = jax.random.PRNGKey(seed)
    gen = pulse_jax.random_generator(TINY_CONFIG, key)
    fit = compute_gaussian_fit(TINY_CONFIG, gen.params["mapping"], jax.random.fold_in(key, 1),
                               num_samples=2000, chunk_size=2000)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(gen.params["synthesis"])
    keys = jax.random.split(jax.random.fold_in(key, 2), len(leaves))
    new = []
    for k, (path, v) in zip(keys, leaves):
        name = jax.tree_util.keystr(path)
        if "noise_strength" in name or "bias" in name:
            v = v + perturb * jax.random.normal(k, v.shape, jnp.float32)
        new.append(v)
    params = dict(gen.params, synthesis=jax.tree_util.tree_unflatten(treedef, new))
    return gen.replace(params=params).replace_gaussian_fit(fit["mean"], fit["std"])


def save_tiny_checkpoint(path: os.PathLike, seed: int = 0) -> pathlib.Path:
    """Writes :func:`tiny_generator` as a pulse-jax checkpoint folder; returns its path."""
    return pulse_jax.save_generator(tiny_generator(seed), path,
                                    extra={"note": "tiny random test generator"})


def face_array(i: int, size: int = LR_SIZE) -> np.ndarray:
    """A smooth random uint8 ``[size, size, 3]`` image (deterministic in ``i``)."""
    rng = np.random.default_rng(1000 + i)
    base = rng.uniform(40, 215, (2, 2, 3))
    img = np.asarray(Image.fromarray(base.astype(np.uint8)).resize((size, size),
                                                                  Image.Resampling.BILINEAR))
    noise = rng.integers(-12, 13, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def write_faces(folder: os.PathLike, n: int, size: int = LR_SIZE, prefix: str = "face",
                start: int = 0) -> list[pathlib.Path]:
    """Writes ``n`` good PNG faces ``{prefix}{i:02d}.png``; returns their paths."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(start, start + n):
        p = folder / f"{prefix}{i:02d}.png"
        Image.fromarray(face_array(i, size)).save(p)
        out.append(p)
    return out


def write_bad_inputs(folder: os.PathLike) -> dict[str, pathlib.Path]:
    """One file of each kind that must be refused; ``{kind: path}``."""
    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    good = io.BytesIO()
    Image.fromarray(face_array(99)).save(good, format="PNG")
    data = good.getvalue()
    bad = {
        "not_an_image": (folder / "bad_text.png", b"this is not a picture\n"),
        "empty": (folder / "bad_empty.png", b""),
        "truncated": (folder / "bad_truncated.png", data[: len(data) // 2]),
    }
    for kind, (p, b) in bad.items():
        p.write_bytes(b)
    out = {k: v[0] for k, v in bad.items()}
    p = folder / "bad_nonsquare.png"
    Image.fromarray(face_array(98, 8)[:, :6].copy()).save(p)
    out["non_square"] = p
    p = folder / "bad_size.png"   # 12 does not divide 32
    Image.fromarray(face_array(97, 12)).save(p)
    out["wrong_size"] = p
    p = folder / "bad_alpha.png"  # a transparent pixel
    rgba = np.dstack([face_array(96), np.full((LR_SIZE, LR_SIZE), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba, "RGBA").save(p)
    out["transparent"] = p
    p = folder / "bad_too_big.png"  # 32 is not smaller than the generator's 32
    Image.fromarray(face_array(95, 32)).save(p)
    out["too_big"] = p
    return out


def png_ok(path: os.PathLike) -> np.ndarray:
    """Decodes a PNG fully (raises if it is damaged) and returns its pixels."""
    with Image.open(path) as im:
        im.load()
        return np.asarray(im)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def subprocess_env(devices: int | None = None, cache_dir: os.PathLike | None = None) -> dict:
    """Environment for a child Python: the repo importable, optional fake CPU devices and a
    shared persistent compilation cache (so children do not all recompile)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    env.pop("XLA_FLAGS", None)
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    if cache_dir is not None:
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["JAX_DEFAULT_MATMUL_PRECISION"] = "highest"
    env.setdefault("TQDM_DISABLE", "1")
    return env


def run_python(args: list[str], env: dict, cwd: os.PathLike | None = None,
               timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd or REPO, timeout=timeout,
                          capture_output=True, text=True)
