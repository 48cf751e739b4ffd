"""GAN losses as StyleGAN uses them: non-saturating logistic G loss, logistic D loss, R1.

All take logits ``[N]`` (float32) and return scalars (means over the batch). StyleGAN's TF
code sums per-sample losses over a minibatch; a mean differs by the constant factor N,
which Adam ignores (up to its eps), and keeps the ratio of the logistic and R1 terms.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def g_nonsaturating_loss(fake_logits: jax.Array) -> jax.Array:
    """``mean(softplus(-D(G(z))))`` = ``-mean(log sigmoid(D(G(z))))``."""
    return jnp.mean(jax.nn.softplus(-fake_logits.astype(jnp.float32)))


def d_logistic_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """``mean(softplus(D(G(z)))) + mean(softplus(-D(x)))``."""
    return (jnp.mean(jax.nn.softplus(fake_logits.astype(jnp.float32)))
            + jnp.mean(jax.nn.softplus(-real_logits.astype(jnp.float32))))


def r1_penalty(d_fn: Callable[[jax.Array], jax.Array], reals: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
    """R1 (Mescheder et al. 2018): the squared norm of ``d/dx sum(D(x))`` on real images.

    Args:
      d_fn: images ``[N, ...]`` -> logits ``[N]``.
      reals: real images ``[N, ...]``.

    Returns:
      ``(logits [N], penalty [N])``: ``D(reals)`` (one forward pass serves both the logistic
      loss and the penalty) and ``sum over (H, W, C) of grad**2`` per sample, float32. The
      gradient is of the batch's summed logits, as in StyleGAN (with minibatch stddev a
      sample's logit depends a little on its group).
    """
    logits, vjp = jax.vjp(d_fn, reals)
    (grad,) = vjp(jnp.ones_like(logits))
    grad = grad.astype(jnp.float32)
    return logits, jnp.sum(jnp.square(grad), axis=tuple(range(1, grad.ndim)))


def r1_loss(penalty: jax.Array, gamma: float, interval: int = 1) -> jax.Array:
    """The D loss term ``gamma / 2 * mean(penalty)``, times ``interval`` for lazy R1.

    With lazy regularization (StyleGAN2) the penalty is applied every ``interval`` steps,
    scaled up by ``interval`` so that its average weight is unchanged.
    """
    return (0.5 * gamma * interval) * jnp.mean(penalty)
