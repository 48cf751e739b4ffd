"""The training loop and what it produces: sample grids and the exported generator.

:func:`train` resumes from the workdir's newest checkpoint (:mod:`~pulse_jax.train.checkpoints`),
runs the jitted step (:mod:`~pulse_jax.train.step`) on a :class:`BatchStream`, and writes
checkpoints and sample grids as it goes; call it again with more steps to continue.
:func:`sample_images` renders fixed latents (no mixing) with given params, e.g. the EMA;
:func:`export_generator` saves the EMA generator with a Gaussian fit as a pulse-jax
checkpoint that ``load_generator`` reads like a converted one.
"""

from __future__ import annotations

import functools
import os
import pathlib
import time
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax import images as images_lib
from pulse_jax import stylegan
from pulse_jax.generator import Generator
from pulse_jax.pictures import image_grid
from pulse_jax.train.checkpoints import MAX_FILE_BYTES, restore_or_init, save_checkpoint
from pulse_jax.train.data import BatchStream
from pulse_jax.train.state import TrainConfig, TrainState
from pulse_jax.train.step import batch_mesh, make_train_step, run_generator, shard_batch

_SAMPLE_TAG = 0x5A4D  # folded into the seed for the fixed sample latents


# ----------------------------------------------------------------------------------------
# The loop.


def train(config: TrainConfig, stream: BatchStream, workdir: os.PathLike, *, steps: int,
          checkpoint_every: int = 1000, keep_checkpoints: int = 3, sample_every: int = 1000,
          sample_count: int = 64, mesh: Optional[jax.sharding.Mesh] = None,
          on_step: Optional[Callable[[int, dict, bool], None]] = None,
          on_start: Optional[Callable[[int, Optional[pathlib.Path]], None]] = None,
          checkpoint_extra: Optional[Mapping[str, Any]] = None,
          checkpoint_max_file_bytes: int = MAX_FILE_BYTES,
          max_seconds: Optional[float] = None) -> TrainState:
    """Trains until ``steps`` steps are done, resuming from ``workdir``'s newest checkpoint.

    ``max_seconds`` (wall clock from the first step, compilation included; None or 0 = none)
    stops earlier, after the step that crosses it, with a checkpoint and samples as at the
    end: for sessions of bounded length (a Colab, a lent GPU). Call again to continue.

    Writes ``{workdir}/checkpoints/`` every ``checkpoint_every`` steps and at the end (the
    newest ``keep_checkpoints``, no file over ``checkpoint_max_file_bytes``), and
    ``{workdir}/samples/{step:09d}.png`` (EMA generator, fixed latents) every
    ``sample_every`` steps, at the end and at step 0. ``stream`` supplies uint8 batches
    of ``config.batch_size``; its position is set from the checkpoint.
    ``on_start(step, checkpoint)`` is called once, ``on_step(step, metrics, last)`` after every
    step (metrics are device scalars: fetching them waits for the step; ``last`` is True for
    the step this call ends with, at ``steps`` or at the time budget).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    mesh = batch_mesh() if mesh is None else mesh
    if stream.batch_size != config.batch_size:
        raise ValueError(f"the stream's batch size {stream.batch_size} is not "
                         f"config.batch_size {config.batch_size}")
    state, position, path = restore_or_init(config, workdir, mesh)
    stream.position = position
    step = int(state.step)
    if on_start is not None:
        on_start(step, path)
    step_fn = make_train_step(config, mesh)
    samples = workdir / "samples"

    def save_samples(step):
        if sample_every:
            save_sample_grid(samples / f"{step:09d}.png", config, state.g_ema, sample_count,
                             seed=config.seed)

    start = time.monotonic()
    if step == 0:
        save_samples(0)
    while step < steps:
        state, metrics = step_fn(state, shard_batch(next(stream), mesh), step)
        step += 1
        last = step == steps or bool(max_seconds and time.monotonic() - start >= max_seconds)
        if on_step is not None:
            on_step(step, metrics, last)
        if checkpoint_every and (step % checkpoint_every == 0 or last):
            save_checkpoint(workdir, state, config, data_position=stream.position,
                            keep=keep_checkpoints, extra=checkpoint_extra,
                            max_file_bytes=checkpoint_max_file_bytes)
        if sample_every and (step % sample_every == 0 or last):
            save_samples(step)
        if last:
            break
    return state


# ----------------------------------------------------------------------------------------
# Samples.


def sample_inputs(config: TrainConfig, count: int, seed: int = 0
                  ) -> tuple[jax.Array, list[jax.Array]]:
    """The fixed latents ``z [count, D]`` and noise maps of the sample grids."""
    key = jax.random.fold_in(jax.random.PRNGKey(seed), _SAMPLE_TAG)
    kz, kn = jax.random.split(key)
    g = config.generator
    return (jax.random.normal(kz, (count, g.dlatent_size), jnp.float32),
            stylegan.noise_normal(g, kn, count))


@functools.partial(jax.jit, static_argnums=0)
def _render(config: TrainConfig, g_params, z, noises):
    cutoff = jnp.full((z.shape[0],), config.generator.num_layers, jnp.int32)
    x = run_generator(config, g_params, z, z, cutoff, noises)
    return jnp.clip((x + 1.0) * 0.5, 0.0, 1.0)


def sample_images(config: TrainConfig, g_params: Any, count: int = 64, seed: int = 0,
                  batch: int = 64) -> np.ndarray:
    """``[count, R, R, 3]`` float32 in [0, 1] of fixed latents (no mixing), e.g. of the EMA."""
    z, noises = sample_inputs(config, count, seed)
    g_params = jax.device_get(g_params)
    out = [np.asarray(_render(config, g_params, z[i:i + batch], [n[i:i + batch] for n in noises]))
           for i in range(0, count, batch)]
    return np.concatenate(out)


def save_sample_grid(path: os.PathLike, config: TrainConfig, g_params: Any, count: int = 64,
                     seed: int = 0) -> pathlib.Path:
    """Renders :func:`sample_images` as a grid and writes it as a PNG (atomically)."""
    return images_lib.save_png(path, image_grid(sample_images(config, g_params, count, seed)),
                               rounding="round")


# ----------------------------------------------------------------------------------------
# Export.


def export_generator(state: TrainState, config: TrainConfig, path: os.PathLike, *,
                     fit_samples: int = 1_000_000, fit_key: Optional[jax.Array] = None,
                     dtype: str = "float16", licence: Optional[str] = None,
                     training: Optional[Mapping[str, Any]] = None,
                     progress: Optional[Callable[[int, int], None]] = None) -> Generator:
    """Saves the EMA generator with a Gaussian fit as a pulse-jax checkpoint; returns it.

    The parameters are rounded to ``dtype`` first (float16 halves the file), so the fit
    (``compute_gaussian_fit``: ``fit_samples`` z, the reference's recipe) describes the
    weights actually shipped, and the returned :class:`Generator` equals what
    ``load_generator(path)`` gives back. ``licence`` and ``training`` (merged with the step,
    images seen and the :class:`TrainConfig`) go into the manifest.
    """
    from pulse_jax.weights.checkpoint import save_generator
    from pulse_jax.weights.gaussian_fit import compute_gaussian_fit

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    host = jax.device_get(state)
    params = jax.tree_util.tree_map(
        lambda x: jnp.asarray(np.asarray(x).astype(dtype).astype(np.float32)), host.g_ema)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0x6A55) if fit_key is None else fit_key
    fit = compute_gaussian_fit(config.generator, params["mapping"], key,
                               num_samples=fit_samples, progress=progress)
    gen = Generator(config=config.generator, params=params).replace_gaussian_fit(
        fit["mean"], fit["std"])
    step = int(host.step)
    info = {"step": step, "images_seen": step * config.batch_size, "weights": "EMA of G",
            "gaussian_fit_samples": int(fit_samples), "train_config": config.to_dict(),
            **(dict(training) if training else {})}
    extra = {"training": info}
    if licence:
        extra["licence"] = licence
    save_generator(gen, path, dtype=dtype, extra=extra)
    return gen
