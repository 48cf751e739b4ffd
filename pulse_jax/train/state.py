"""The trainer's configuration and state: what the train step computes and what it changes.

:class:`TrainConfig` is frozen and hashable (the jitted step specializes on it); its
``generator`` is :mod:`pulse_jax.stylegan`'s :class:`GeneratorConfig`, so a trained model
loads and searches like an imported one. :class:`TrainState` is a pytree of everything a
step changes: the step count, G's and D's raw equalized-lr params, G's EMA, the two optax
Adam states and a raw uint32 key. :func:`init_state` builds a fresh one from
``PRNGKey(config.seed)``; :func:`state_shapes` gives its leaves' shapes and dtypes without
computing anything (what a checkpoint is checked against).

Adam as StyleGAN uses it (:func:`make_optimizers`): ``b1 = 0, b2 = 0.99, eps = 1e-8`` for
both networks (optax's Adam adds eps after the bias correction, TF's before: a negligible
difference). The mapping network's learning-rate multiplier (0.01) lives in its runtime
weight multipliers, so one Adam learning rate serves both.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax

from pulse_jax import stylegan
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.train import discriminator as dlib
from pulse_jax.train.discriminator import DiscriminatorConfig

COMPUTE_DTYPES = ("float32", "bfloat16")


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
