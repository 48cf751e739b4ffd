"""Training our StyleGAN v1 generator: the pure train step, checkpoints, samples and export.

Everything a model needs to be searched like the imported ones: the generator is exactly
:mod:`pulse_jax.stylegan`'s (same :class:`GeneratorConfig`, same raw equalized-lr params),
trained against :mod:`pulse_jax.train.discriminator` as StyleGAN v1 trains it:

* losses: non-saturating logistic for G, logistic + R1 on reals (``gamma / 2``) for D; R1
  every step (StyleGAN v1) or every ``r1_interval`` steps, scaled by the interval (lazy R1,
  StyleGAN2; here folded into the same D update, so Adam's betas need no adjustment);
* Adam with ``b1 = 0, b2 = 0.99, eps = 1e-8`` for both networks (optax's Adam; it adds eps
  after the bias correction, TF's before: a negligible difference). The mapping network's
  learning-rate multiplier (0.01) lives in its runtime weight multipliers, so one Adam
  learning rate serves both;
* each step: one D update (fakes from the current G), then one G update against the updated
  D, each with freshly drawn latents; per-layer noise is drawn from the step's key;
* style mixing: each sample draws two z; with probability ``style_mixing_prob`` a crossover
  layer ``c`` uniform in ``[1, L - 1]`` takes layers ``< c`` from ``w1`` and the rest from
  ``w2`` (per sample; StyleGAN draws one crossover per minibatch);
* an exponential moving average of G's params with a half-life in images (StyleGAN's
  ``G_smoothing_kimg = 10``: ``beta = 0.5 ** (batch / 10_000)``), optionally ramped up as
  StyleGAN2-ADA does (half-life ``<= ema_rampup * images seen``), which matters for short runs.

The step is one jit-compiled function of ``(TrainState, uint8 batch)``. It is data-parallel
over a 1-D mesh with axis ``"batch"`` (:func:`batch_mesh`): the real batch and the
generated latents and noise are sharded over it, the parameters and optimizer state are
replicated, and XLA inserts the gradient all-reduce. Random numbers come from
``fold_in(rng, step)``, which does not depend on the sharding.

Mixed precision: ``compute_dtype="bfloat16"`` casts parameters and activations of both
networks (not the mapping network) to bfloat16 inside the forward and backward passes; the
parameters, optimizer state, EMA, losses, minibatch statistics and the R1 penalty stay in
float32. It speeds up GPUs/TPUs; on CPU bfloat16 is emulated and is *slower*, so keep
float32 there.

Checkpoints (:func:`save_checkpoint`): ``{workdir}/checkpoints/ckpt_{step:09d}/`` with
``state.npz`` (every leaf of the :class:`TrainState` in float32/int32/uint32, exact) and
``meta.json`` (step, the data stream's position, the :class:`TrainConfig`, the leaves' names,
shapes and dtypes, and any extra fields such as the run's full config). It is written under
a temporary name and renamed into place; the newest ``keep`` are kept. Resuming from one
with the same config, data and device count continues bit-identically: ``N`` steps equal
``k`` steps, a restart, and ``N - k`` steps.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
from typing import Any, Callable, Mapping, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pulse_jax import devices as devices_lib
from pulse_jax import files
from pulse_jax import images as images_lib
from pulse_jax.pictures import image_grid
from pulse_jax import stylegan
from pulse_jax.generator import Generator
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.train import discriminator as dlib
from pulse_jax.train import losses
from pulse_jax.train.data import BatchStream
from pulse_jax.train.discriminator import DiscriminatorConfig

P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding

COMPUTE_DTYPES = ("float32", "bfloat16")
CHECKPOINT_FORMAT = "pulse-jax-train-state"
CHECKPOINT_VERSION = 1
_CKPT_RE = re.compile(r"^ckpt_(\d+)$")
_SAMPLE_TAG = 0x5A4D  # folded into the seed for the fixed sample latents

# Python-side trace counts of the jitted functions; tests use them to check for retracing.
TRACE_COUNTS: dict[str, int] = {"train_step": 0}


# ----------------------------------------------------------------------------------------
# Configuration and state.


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What the train step computes (hashable: the jitted step specializes on it).

    Attributes:
      generator: the generator's architecture (what the exported checkpoint records).
      discriminator: the D's; None = :meth:`DiscriminatorConfig.from_generator`.
      batch_size: global batch (over all devices); a multiple of the device count.
      g_lr, d_lr: Adam learning rates.
      adam_b1, adam_b2, adam_eps: Adam's (StyleGAN: 0.0, 0.99, 1e-8).
      r1_gamma: R1 weight (the D loss gets ``gamma / 2 * |grad D(x)|^2``); 0 = off.
      r1_interval: apply R1 every this many steps (1 = StyleGAN v1's every step).
      ema_half_life_images: half-life of G's EMA in images (StyleGAN: 10_000); 0 = no EMA
        (the EMA equals G).
      ema_rampup: if > 0, the half-life is at most ``ema_rampup * images seen``.
      style_mixing_prob: probability that a sample mixes two latents (StyleGAN: 0.9).
      compute_dtype: "float32" or "bfloat16" (mixed precision; for GPU/TPU).
      seed: the initialization and step keys come from ``PRNGKey(seed)``.
    """

    generator: GeneratorConfig = GeneratorConfig(resolution=64, fmap_base=4096, fmap_max=256,
                                                 dlatent_size=256)
    discriminator: Optional[DiscriminatorConfig] = None
    batch_size: int = 32
    g_lr: float = 0.002
    d_lr: float = 0.002
    adam_b1: float = 0.0
    adam_b2: float = 0.99
    adam_eps: float = 1e-8
    r1_gamma: float = 10.0
    r1_interval: int = 1
    ema_half_life_images: float = 10_000.0
    ema_rampup: float = 0.0
    style_mixing_prob: float = 0.9
    compute_dtype: str = "float32"
    seed: int = 0

    def __post_init__(self):
        g = self.generator
        if self.discriminator is None:
            object.__setattr__(self, "discriminator", DiscriminatorConfig.from_generator(g))
        d = self.discriminator
        if (d.resolution, d.num_channels) != (g.resolution, g.num_channels):
            raise ValueError(f"the discriminator's resolution/channels ({d.resolution}, "
                             f"{d.num_channels}) differ from the generator's "
                             f"({g.resolution}, {g.num_channels})")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.r1_interval < 1:
            raise ValueError(f"r1_interval must be >= 1, got {self.r1_interval}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype must be one of {COMPUTE_DTYPES}, "
                             f"got {self.compute_dtype!r}")
        if not 0.0 <= self.style_mixing_prob <= 1.0:
            raise ValueError(f"style_mixing_prob must be in [0, 1], got {self.style_mixing_prob}")
        for name in ("g_lr", "d_lr", "adam_eps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("r1_gamma", "ema_half_life_images", "ema_rampup"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["generator"] = self.generator.to_dict()
        d["discriminator"] = self.discriminator.to_dict()
        return d

    @classmethod
    def from_run_config(cls, cfg: Any) -> "TrainConfig":
        """The TrainConfig of a run config (``experiments/configs/train_*.py``'s ConfigDict:
        ``generator``/``discriminator`` sub-dicts, ``ema_kimg`` in thousands of images)."""
        gen = GeneratorConfig.from_dict(cfg.generator.to_dict())
        return cls(
            generator=gen,
            discriminator=DiscriminatorConfig.from_generator(gen, **cfg.discriminator.to_dict()),
            batch_size=int(cfg.batch_size), g_lr=float(cfg.g_lr), d_lr=float(cfg.d_lr),
            adam_b1=float(cfg.adam_b1), adam_b2=float(cfg.adam_b2), adam_eps=float(cfg.adam_eps),
            r1_gamma=float(cfg.r1_gamma), r1_interval=int(cfg.r1_interval),
            ema_half_life_images=float(cfg.ema_kimg) * 1000.0, ema_rampup=float(cfg.ema_rampup),
            style_mixing_prob=float(cfg.style_mixing_prob),
            compute_dtype=str(cfg.compute_dtype), seed=int(cfg.seed))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainConfig":
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {sorted(unknown)}")
        if isinstance(d.get("generator"), Mapping):
            d["generator"] = GeneratorConfig.from_dict(d["generator"])
        if isinstance(d.get("discriminator"), Mapping):
            gen = d.get("generator", cls.generator)
            d["discriminator"] = DiscriminatorConfig.from_generator(gen, **d["discriminator"])
        return cls(**d)


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training (a pytree; ``rng`` is a raw uint32 key).

    ``step`` int32 ``[]``: steps done; ``g_params``/``g_ema``: ``{"synthesis", "mapping"}``
    as :func:`pulse_jax.stylegan.init_params`; ``d_params``; the two optax Adam states.
    """

    step: jax.Array
    g_params: Any
    d_params: Any
    g_ema: Any
    g_opt_state: Any
    d_opt_state: Any
    rng: jax.Array


def make_optimizers(config: TrainConfig) -> tuple[optax.GradientTransformation, ...]:
    """``(g_tx, d_tx)``: Adam as StyleGAN uses it."""
    adam = functools.partial(optax.adam, b1=config.adam_b1, b2=config.adam_b2,
                             eps=config.adam_eps)
    return adam(config.g_lr), adam(config.d_lr)


def init_state(config: TrainConfig, key: Optional[jax.Array] = None) -> TrainState:
    """A fresh state; ``key`` defaults to ``PRNGKey(config.seed)``. (Compiled once per config.)"""
    key = jax.random.PRNGKey(config.seed) if key is None else key
    # A copy of every leaf: equal outputs of one jitted call (g_params and g_ema, Adam's zero
    # moments) may share a buffer, and the donating train step needs each leaf on its own.
    return jax.tree_util.tree_map(lambda x: jnp.array(x, copy=True), _init_state(config, key))


@functools.partial(jax.jit, static_argnums=0)
def _init_state(config: TrainConfig, key: jax.Array) -> TrainState:
    kg, kd, kr = jax.random.split(key, 3)
    g_params = stylegan.init_params(config.generator, kg)
    d_params = dlib.init_params(config.discriminator, kd)
    g_tx, d_tx = make_optimizers(config)
    return TrainState(
        step=jnp.zeros((), jnp.int32), g_params=g_params, d_params=d_params,
        g_ema=g_params,
        g_opt_state=g_tx.init(g_params), d_opt_state=d_tx.init(d_params), rng=kr)


def state_shapes(config: TrainConfig) -> TrainState:
    """The :class:`TrainState` of ``config`` as ``ShapeDtypeStruct`` leaves."""
    return jax.eval_shape(lambda k: _init_state(config, k), jax.random.PRNGKey(0))


# ----------------------------------------------------------------------------------------
# Devices.


def batch_mesh(devices: Any = None) -> jax.sharding.Mesh:
    """A 1-D mesh with axis ``"batch"``: None or 0 = all local devices, an int n = the first
    n, or a sequence of devices; a ``Mesh`` is returned as is. (Single-process; every device
    gets ``batch / n`` images.)"""
    return devices_lib.make_mesh(devices, axis="batch")


def replicate(tree: Any, mesh: jax.sharding.Mesh) -> Any:
    """Puts every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: np.ndarray, mesh: jax.sharding.Mesh) -> jax.Array:
    """Splits a host batch ``[B, ...]`` over the mesh's ``"batch"`` axis."""
    return jax.device_put(batch, NamedSharding(mesh, P("batch")))


def _check_batch(config: TrainConfig, mesh: jax.sharding.Mesh) -> None:
    if config.batch_size % mesh.size:
        raise ValueError(f"batch_size {config.batch_size} is not a multiple of the "
                         f"{mesh.size} devices")


# ----------------------------------------------------------------------------------------
# Networks with style mixing and mixed precision.


def _cast(tree: Any, dtype) -> Any:
    return jax.tree_util.tree_map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def mix_wplus(w1: jax.Array, w2: jax.Array, cutoff: jax.Array, num_layers: int) -> jax.Array:
    """``[B, D], [B, D], [B] int -> [B, L, D]``: layers ``< cutoff`` from w1, the rest from w2."""
    layer = jnp.arange(num_layers)
    take1 = (layer[None, :] < cutoff[:, None])[..., None]
    return jnp.where(take1, w1[:, None, :], w2[:, None, :])


def draw_latents(config: TrainConfig, key: jax.Array, batch: int
                 ) -> tuple[jax.Array, jax.Array, jax.Array, list[jax.Array]]:
    """``(z1 [B, D], z2 [B, D], cutoff [B] int32, noises)`` for one generator call.

    ``cutoff`` is ``L`` (no mixing) or, with probability ``style_mixing_prob``, uniform in
    ``[1, L - 1]``.
    """
    g = config.generator
    L = g.num_layers
    kz, kp, kc, kn = jax.random.split(key, 4)
    z = jax.random.normal(kz, (2, batch, g.dlatent_size), jnp.float32)
    mix = jax.random.uniform(kp, (batch,)) < config.style_mixing_prob
    cutoff = jnp.where(mix, jax.random.randint(kc, (batch,), 1, L), L).astype(jnp.int32)
    return z[0], z[1], cutoff, stylegan.noise_normal(g, kn, batch)


def run_generator(config: TrainConfig, g_params: Any, z1: jax.Array, z2: jax.Array,
                  cutoff: jax.Array, noises: Sequence[jax.Array]) -> jax.Array:
    """Raw images ``[B, R, R, 3]`` float32 (about [-1, 1]) from two latents and a crossover.

    The mapping network runs in float32; synthesis in ``config.compute_dtype``.
    """
    g = config.generator
    dt = jnp.dtype(config.compute_dtype)
    B = z1.shape[0]
    w = stylegan.Mapping(g).apply({"params": g_params["mapping"]}, jnp.concatenate([z1, z2]))
    wplus = mix_wplus(w[:B], w[B:], cutoff, g.num_layers)
    img = stylegan.Synthesis(g).apply({"params": _cast(g_params["synthesis"], dt)},
                                      wplus.astype(dt), [n.astype(dt) for n in noises])
    return img.astype(jnp.float32)


def run_discriminator(config: TrainConfig, d_params: Any, images: jax.Array) -> jax.Array:
    """Logits ``[N]`` float32 of images ``[N, R, R, 3]``, computed in ``compute_dtype``."""
    dt = jnp.dtype(config.compute_dtype)
    return dlib.discriminate(config.discriminator, _cast(d_params, dt), images.astype(dt))


def generate(config: TrainConfig, g_params: Any, key: jax.Array, batch: int,
             sharding: Optional[NamedSharding] = None) -> jax.Array:
    """Training-time fakes ``[B, R, R, 3]``: fresh latents, style mixing and noise from ``key``.

    ``sharding`` (inside jit) splits the latents and noise over the batch axis, so each
    device generates its own share.
    """
    z1, z2, cutoff, noises = draw_latents(config, key, batch)
    if sharding is not None:
        z1, z2, cutoff, noises = jax.lax.with_sharding_constraint((z1, z2, cutoff, noises),
                                                                  sharding)
    return run_generator(config, g_params, z1, z2, cutoff, noises)


# ----------------------------------------------------------------------------------------
# The train step.


def ema_beta(config: TrainConfig, step: jax.Array) -> jax.Array:
    """EMA decay for the update after ``step`` steps: ``0.5 ** (B / half_life)``."""
    B = config.batch_size
    half = jnp.float32(config.ema_half_life_images)
    if config.ema_rampup > 0:
        half = jnp.minimum(half, jnp.asarray(step, jnp.float32) * (B * config.ema_rampup))
    return jnp.where(half > 0, 0.5 ** (B / jnp.maximum(half, 1e-8)), 0.0).astype(jnp.float32)


def ema_update(ema: Any, params: Any, beta: jax.Array) -> Any:
    """``params + (ema - params) * beta`` leaf by leaf (StyleGAN's ``lerp(params, ema, beta)``)."""
    return jax.tree_util.tree_map(lambda e, p: p + (e - p) * beta, ema, params)


def images_to_float(batch: jax.Array) -> jax.Array:
    """uint8 ``[B, R, R, 3]`` -> float32 in [-1, 1] (``u / 127.5 - 1``)."""
    return batch.astype(jnp.float32) * (1.0 / 127.5) - 1.0


def train_step(config: TrainConfig, state: TrainState, reals: jax.Array,
               data_sharding: Optional[NamedSharding] = None,
               with_r1: Optional[bool] = None) -> tuple[TrainState, dict]:
    """One D update then one G update and the EMA (pure; :func:`make_train_step` jits it).

    Args:
      config: static settings.
      state: the current :class:`TrainState`.
      reals: uint8 ``[B, R, R, 3]`` (or float in [-1, 1]).
      data_sharding: the batch sharding to constrain generated latents to, or None.
      with_r1: whether this step applies the (lazy) R1 term; None decides in the graph
        (``step % r1_interval == 0`` with ``lax.cond``). XLA:CPU runs a conditional's
        branches several times slower than the same ops outside one (25.7 s vs 4.2 s per
        step at 64x64), so :func:`make_train_step` compiles both variants and picks on
        the host instead.

    Returns:
      ``(new_state, metrics)``; metrics are float32 scalars: ``d_loss`` (logistic part),
      ``g_loss``, ``r1_penalty`` (mean ``|grad|^2``; 0 on steps without R1),
      ``real_logit``, ``fake_logit`` (means) and ``d_accuracy`` (fraction of reals with
      logit > 0 and fakes with logit < 0).
    """
    TRACE_COUNTS["train_step"] += 1
    B = reals.shape[0]
    if B != config.batch_size:
        raise ValueError(f"batch has {B} images, config.batch_size is {config.batch_size}")
    if reals.dtype == jnp.uint8:
        reals = images_to_float(reals)
    g_tx, d_tx = make_optimizers(config)
    key = jax.random.fold_in(state.rng, state.step)
    k_d, k_g = jax.random.split(key)
    D = functools.partial(run_discriminator, config)

    # --- D: logistic loss on (reals, fakes of the current G) + R1 on reals.
    fakes = jax.lax.stop_gradient(generate(config, state.g_params, k_d, B, data_sharding))

    def d_loss_fn(d_params, with_r1: bool):
        fake_logits = D(d_params, fakes)
        if with_r1:
            real_logits, pen = losses.r1_penalty(lambda x: D(d_params, x), reals)
            reg = losses.r1_loss(pen, config.r1_gamma, config.r1_interval)
            pen = jnp.mean(pen)
        else:
            real_logits, reg, pen = D(d_params, reals), 0.0, jnp.float32(0.0)
        loss = losses.d_logistic_loss(real_logits, fake_logits)
        acc = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))
        aux = {"d_loss": loss, "r1_penalty": pen, "real_logit": jnp.mean(real_logits),
               "fake_logit": jnp.mean(fake_logits), "d_accuracy": acc.astype(jnp.float32)}
        return loss + reg, aux

    def d_grads(with_r1: bool):
        return lambda p: jax.value_and_grad(d_loss_fn, has_aux=True)(p, with_r1)

    if config.r1_gamma == 0:
        (_, d_aux), d_g = d_grads(False)(state.d_params)
    elif config.r1_interval == 1 or with_r1 is not None:
        (_, d_aux), d_g = d_grads(config.r1_interval == 1 or bool(with_r1))(state.d_params)
    else:
        (_, d_aux), d_g = jax.lax.cond(state.step % config.r1_interval == 0,
                                       d_grads(True), d_grads(False), state.d_params)
    d_updates, d_opt_state = d_tx.update(d_g, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    # --- G: non-saturating loss against the updated D, fresh latents.
    def g_loss_fn(g_params):
        return losses.g_nonsaturating_loss(D(d_params, generate(config, g_params, k_g, B,
                                                                data_sharding)))

    g_loss, g_g = jax.value_and_grad(g_loss_fn)(state.g_params)
    g_updates, g_opt_state = g_tx.update(g_g, state.g_opt_state, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)
    g_ema = ema_update(state.g_ema, g_params, ema_beta(config, state.step))

    new = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params, g_ema=g_ema,
                        g_opt_state=g_opt_state, d_opt_state=d_opt_state)
    metrics = dict(d_aux, g_loss=g_loss)
    return new, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


@functools.lru_cache(maxsize=16)
def make_train_step(config: TrainConfig, mesh: Optional[jax.sharding.Mesh] = None
                    ) -> Callable[..., tuple[TrainState, dict]]:
    """The jitted ``step(state, reals, step_index=None) -> (state, metrics)`` for ``config``.

    ``state`` is replicated over the mesh and donated (do not reuse it after the call);
    ``reals`` (uint8 ``[B, R, R, 3]``) is sharded over its ``"batch"`` axis (see
    :func:`shard_batch`). With lazy R1 (``r1_interval > 1``), pass the host-side step
    index so that the step with or without R1 runs as its own compiled program (no
    ``lax.cond``, which is slow on CPU); without it the choice is made in the graph.
    """
    mesh = batch_mesh() if mesh is None else mesh
    _check_batch(config, mesh)
    repl, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("batch"))

    def compiled(with_r1):
        fn = functools.partial(train_step, config, data_sharding=data, with_r1=with_r1)
        return jax.jit(fn, in_shardings=(repl, data), out_shardings=(repl, repl),
                       donate_argnums=(0,))

    variants = {None: compiled(None)}
    lazy = config.r1_gamma != 0 and config.r1_interval > 1
    if lazy:
        variants.update({True: compiled(True), False: compiled(False)})

    def step(state: TrainState, reals: jax.Array, step_index: Optional[int] = None):
        if lazy and step_index is not None:
            return variants[step_index % config.r1_interval == 0](state, reals)
        return variants[None](state, reals)

    return step


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
# Checkpoints.


def checkpoint_root(workdir: os.PathLike) -> pathlib.Path:
    return pathlib.Path(workdir) / "checkpoints"


def list_checkpoints(workdir: os.PathLike) -> list[tuple[int, pathlib.Path]]:
    """Complete checkpoints ``[(step, path)]`` in ``workdir``, oldest first."""
    root = checkpoint_root(workdir)
    if not root.is_dir():
        return []
    out = []
    for p in root.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and (p / "meta.json").is_file() and (p / "state.npz").is_file():
            out.append((int(m.group(1)), p))
    return sorted(out)


def latest_checkpoint(workdir: os.PathLike) -> Optional[pathlib.Path]:
    """The newest complete checkpoint folder in ``workdir``, or None."""
    found = list_checkpoints(workdir)
    return found[-1][1] if found else None


def _leaf_names(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def save_checkpoint(workdir: os.PathLike, state: TrainState, config: TrainConfig, *,
                    data_position: int = 0, keep: int = 3,
                    extra: Optional[Mapping[str, Any]] = None) -> pathlib.Path:
    """Writes ``state`` (+ data position, config, ``extra``) as ``ckpt_{step:09d}``.

    The folder is built under a temporary name and renamed into place, so a crash leaves
    the previous checkpoints intact; only the newest ``keep`` (>= 1) are kept.
    """
    root = checkpoint_root(workdir)
    root.mkdir(parents=True, exist_ok=True)
    host = jax.device_get(state)
    leaves = jax.tree_util.tree_leaves(host)
    names = _leaf_names(host)
    step = int(host.step)
    final = root / f"ckpt_{step:09d}"
    for stale in root.glob(".tmp_ckpt_*"):  # left by a crashed save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp_ckpt_{step:09d}_", dir=root))
    try:
        arrays = {f"leaf{i:05d}": np.asarray(v) for i, v in enumerate(leaves)}
        with open(tmp / "state.npz", "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        meta = {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "step": step,
            "data_position": int(data_position),
            "train_config": config.to_dict(),
            "leaves": [[n, list(a.shape), str(a.dtype)] for n, a in zip(names, arrays.values())],
            **(dict(extra) if extra else {}),
        }
        with open(tmp / "meta.json", "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        files.replace_dir(tmp, final, root / f".tmp_ckpt_old_{step:09d}")
        files.fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for _, p in list_checkpoints(workdir)[:-max(1, keep)]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def load_checkpoint(path: os.PathLike, template: Any) -> tuple[TrainState, dict]:
    """Reads a checkpoint folder into the structure of ``template`` (a :class:`TrainState`
    of arrays or ``ShapeDtypeStruct``s, e.g. :func:`state_shapes`); returns
    ``(state of numpy arrays, meta)``. Names, shapes and dtypes must all match."""
    path = pathlib.Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable checkpoint metadata ({e})") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    if meta.get("format_version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta['format_version']} is newer than "
                         f"this pulse-jax reads ({CHECKPOINT_VERSION})")
    t_leaves, treedef = jax.tree_util.tree_flatten(template)
    names = _leaf_names(template)
    stored = meta["leaves"]
    if [s[0] for s in stored] != names:
        diff = sorted(set(names) ^ {s[0] for s in stored})[:5]
        raise ValueError(f"{path}: the state's structure differs from the config's ({diff})")
    out = []
    with np.load(path / "state.npz", allow_pickle=False) as f:
        for i, (t, (name, shape, dtype)) in enumerate(zip(t_leaves, stored)):
            a = f[f"leaf{i:05d}"]
            if a.shape != tuple(t.shape) or a.dtype != t.dtype:
                raise ValueError(f"{path}: {name} is {a.dtype}{list(a.shape)}, the config "
                                 f"needs {t.dtype}{list(t.shape)}")
            out.append(a)
    return jax.tree_util.tree_unflatten(treedef, out), meta


def restore_or_init(config: TrainConfig, workdir: os.PathLike,
                    mesh: Optional[jax.sharding.Mesh] = None
                    ) -> tuple[TrainState, int, Optional[pathlib.Path]]:
    """``(state, data_position, checkpoint path or None)``: the newest checkpoint in
    ``workdir`` if there is one, else a fresh state; replicated over ``mesh``.

    The checkpoint's generator and discriminator must equal ``config``'s; other settings
    (learning rates, ...) may change between runs (then the resumed run is no longer
    identical to an uninterrupted one).
    """
    mesh = batch_mesh() if mesh is None else mesh
    path = latest_checkpoint(workdir)
    if path is None:
        return replicate(init_state(config), mesh), 0, None
    state, meta = load_checkpoint(path, state_shapes(config))
    saved = TrainConfig.from_dict(meta["train_config"])
    if (saved.generator, saved.discriminator) != (config.generator, config.discriminator):
        raise ValueError(f"{path} was trained with another architecture:\n  "
                         f"{saved.generator} / {saved.discriminator}\nnot\n  "
                         f"{config.generator} / {config.discriminator}")
    return replicate(state, mesh), int(meta["data_position"]), path


# ----------------------------------------------------------------------------------------
# The loop.


def train(config: TrainConfig, stream: BatchStream, workdir: os.PathLike, *, steps: int,
          checkpoint_every: int = 1000, keep_checkpoints: int = 3, sample_every: int = 1000,
          sample_count: int = 64, mesh: Optional[jax.sharding.Mesh] = None,
          on_step: Optional[Callable[[int, dict, bool], None]] = None,
          on_start: Optional[Callable[[int, Optional[pathlib.Path]], None]] = None,
          checkpoint_extra: Optional[Mapping[str, Any]] = None,
          max_seconds: Optional[float] = None) -> TrainState:
    """Trains until ``steps`` steps are done, resuming from ``workdir``'s newest checkpoint.

    ``max_seconds`` (wall clock from the first step, compilation included; None or 0 = none)
    stops earlier, after the step that crosses it, with a checkpoint and samples as at the
    end: for sessions of bounded length (a Colab, a lent GPU). Call again to continue.

    Writes ``{workdir}/checkpoints/`` every ``checkpoint_every`` steps and at the end, and
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
                            keep=keep_checkpoints, extra=checkpoint_extra)
        if sample_every and (step % sample_every == 0 or last):
            save_samples(step)
        if last:
            break
    return state


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
