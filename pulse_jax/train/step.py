"""The train step: one D update, one G update and the EMA, jitted and data-parallel.

Everything here is a pure function of a :class:`~pulse_jax.train.state.TrainState` and a
batch, trained as StyleGAN v1 trains:

* losses: non-saturating logistic for G, logistic + R1 on reals (``gamma / 2``) for D; R1
  every step (StyleGAN v1) or every ``r1_interval`` steps, scaled by the interval (lazy R1,
  StyleGAN2; here folded into the same D update, so Adam's betas need no adjustment);
* each step: one D update (fakes from the current G), then one G update against the updated
  D, each with freshly drawn latents; per-layer noise is drawn from the step's key;
* style mixing: each sample draws two z; with probability ``style_mixing_prob`` a crossover
  layer ``c`` uniform in ``[1, L - 1]`` takes layers ``< c`` from ``w1`` and the rest from
  ``w2`` (per sample; StyleGAN draws one crossover per minibatch);
* an exponential moving average of G's params with a half-life in images (StyleGAN's
  ``G_smoothing_kimg = 10``: ``beta = 0.5 ** (batch / 10_000)``), optionally ramped up as
  StyleGAN2-ADA does (half-life ``<= ema_rampup * images seen``), which matters for short runs.

:func:`make_train_step` jits the step over a 1-D mesh with axis ``"batch"``
(:func:`batch_mesh`): the real batch and the generated latents and noise are sharded over
it, the parameters and optimizer state are replicated, and XLA inserts the gradient
all-reduce. Random numbers come from ``fold_in(rng, step)``, which does not depend on the
sharding.

Mixed precision: ``compute_dtype="bfloat16"`` casts parameters and activations of both
networks (not the mapping network) to bfloat16 inside the forward and backward passes; the
parameters, optimizer state, EMA, losses, minibatch statistics and the R1 penalty stay in
float32. It speeds up GPUs/TPUs; on CPU bfloat16 is emulated and is *slower*, so keep
float32 there.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from pulse_jax import devices as devices_lib
from pulse_jax import stylegan
from pulse_jax.train import discriminator as dlib
from pulse_jax.train import losses
from pulse_jax.train.state import TrainConfig, TrainState, make_optimizers

P = jax.sharding.PartitionSpec
NamedSharding = jax.sharding.NamedSharding


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


def d_loss(config: TrainConfig, d_params: Any, reals: jax.Array, fakes: jax.Array,
           with_r1: bool) -> tuple[jax.Array, dict]:
    """D's loss on float reals and fakes ``[B, R, R, 3]``: logistic, plus R1 on the reals.

    Returns ``(loss + R1 term, aux)``; ``aux`` holds the float32 scalars ``d_loss`` (the
    logistic part), ``r1_penalty`` (mean ``|grad|^2``; 0 without R1), ``real_logit``,
    ``fake_logit`` (means) and ``d_accuracy`` (reals with logit > 0 and fakes with logit < 0).
    """
    D = functools.partial(run_discriminator, config, d_params)
    fake_logits = D(fakes)
    if with_r1:
        real_logits, pen = losses.r1_penalty(D, reals)
        reg = losses.r1_loss(pen, config.r1_gamma, config.r1_interval)
        pen = jnp.mean(pen)
    else:
        real_logits, reg, pen = D(reals), 0.0, jnp.float32(0.0)
    loss = losses.d_logistic_loss(real_logits, fake_logits)
    acc = 0.5 * (jnp.mean(real_logits > 0) + jnp.mean(fake_logits < 0))
    aux = {"d_loss": loss, "r1_penalty": pen, "real_logit": jnp.mean(real_logits),
           "fake_logit": jnp.mean(fake_logits), "d_accuracy": acc.astype(jnp.float32)}
    return loss + reg, aux


def d_gradients(config: TrainConfig, state: TrainState, reals: jax.Array, fakes: jax.Array,
                with_r1: Optional[bool]) -> tuple[dict, Any]:
    """``(aux, grads)`` of :func:`d_loss` w.r.t. ``state.d_params``; R1 as ``with_r1`` says
    (None: on steps that are multiples of ``r1_interval``, chosen in the graph)."""
    def grads(r1: bool):
        return lambda p: jax.value_and_grad(d_loss, argnums=1, has_aux=True)(
            config, p, reals, fakes, r1)

    if config.r1_gamma == 0:
        (_, aux), g = grads(False)(state.d_params)
    elif config.r1_interval == 1 or with_r1 is not None:
        (_, aux), g = grads(config.r1_interval == 1 or bool(with_r1))(state.d_params)
    else:
        (_, aux), g = jax.lax.cond(state.step % config.r1_interval == 0,
                                   grads(True), grads(False), state.d_params)
    return aux, g


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
        branches several times slower than the same ops outside one, so
        :func:`make_train_step` compiles both variants and picks on the host instead.

    Returns:
      ``(new_state, metrics)``; metrics are :func:`d_loss`'s float32 scalars and ``g_loss``.
    """
    B = reals.shape[0]
    if B != config.batch_size:
        raise ValueError(f"batch has {B} images, config.batch_size is {config.batch_size}")
    if reals.dtype == jnp.uint8:
        reals = images_to_float(reals)
    g_tx, d_tx = make_optimizers(config)
    key = jax.random.fold_in(state.rng, state.step)
    k_d, k_g = jax.random.split(key)

    # D: logistic loss on (reals, fakes of the current G) + R1 on reals.
    fakes = jax.lax.stop_gradient(generate(config, state.g_params, k_d, B, data_sharding))
    d_aux, d_g = d_gradients(config, state, reals, fakes, with_r1)
    d_updates, d_opt_state = d_tx.update(d_g, state.d_opt_state, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    # G: non-saturating loss against the updated D, fresh latents.
    def g_loss_fn(g_params):
        fakes = generate(config, g_params, k_g, B, data_sharding)
        return losses.g_nonsaturating_loss(run_discriminator(config, d_params, fakes))

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
