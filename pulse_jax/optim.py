"""PULSE's optimizer: torch-semantics inner optimizers, the spherical projection, and the
learning-rate schedules (``SphericalOptimizer.py`` and ``PULSE.py``; docs/reference.md, "The
spherical optimizer" and "Learning-rate schedules").

Use in the search (the exact path; see :func:`spherical_update` for why there is no
``GradientTransformation`` wrapper)::

    opt = make_optimizer("adam", make_schedule("linear1cycledrop", steps, 0.4))
    radii = init_radii(params)          # once, from the initial params
    opt_state = opt.init(params)
    params, opt_state = spherical_update(opt, params, opt_state, grads, radii)  # every step

``params`` is any pytree of arrays whose dims 0 and 1 are batch dims (latent ``[B, L, D]``,
noise NCHW ``[B, 1, H, W]`` or NHWC-with-batch-rows ``[B, R, ...]`` as the caller chooses: the
radius is taken over all dims from 2 on, one radius per (dim 0, dim 1) slice).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import optax

OPTIMIZERS = ("adam", "adamax", "sgd", "sgdm")
SCHEDULES = ("fixed", "linear1cycle", "linear1cycledrop")

_SPHERE_EPS = 1e-9  # inside the square root of every radius, as the reference


# ---------------------------------------------------------------------------------------------
# Spherical projection.


def sphere_radii(x: jax.Array) -> jax.Array:
    """Norm of every (dim 0, dim 1) slice: ``sqrt(sum over dims >= 2 of x^2 + 1e-9)``.

    Args:
      x: ``[B, K, ...]`` with ndim >= 2 (dims 0 and 1 are both batch dims, as the reference).

    Returns:
      ``x.shape[:2] + (1,) * (x.ndim - 2)``, broadcastable against x.
    """
    if x.ndim < 2:
        raise ValueError(f"sphere_radii needs an array with ndim >= 2, got shape {x.shape}")
    sq = jnp.sum(jnp.square(x), axis=tuple(range(2, x.ndim)), keepdims=True)
    return jnp.sqrt(sq + _SPHERE_EPS)


def project(x: jax.Array, radii: jax.Array) -> jax.Array:
    """Rescales each (dim 0, dim 1) slice of x to norm ``radii``: ``x / sphere_radii(x) * radii``.

    Args:
      x: ``[B, K, ...]``.
      radii: ``sphere_radii`` of the initial x, shape ``x.shape[:2] + (1,) * (x.ndim - 2)``.
    """
    return x / sphere_radii(x) * radii


def init_radii(params: chex.ArrayTree) -> chex.ArrayTree:
    """``sphere_radii`` of every leaf: the radii to keep for the whole search."""
    return jax.tree.map(sphere_radii, params)


def dim_radii(x: jax.Array) -> jax.Array:
    """``sqrt(d)`` for every (dim 0, dim 1) slice of x, ``d`` its size (the product of dims
    from 2 on): the radius of the sphere a d-dimensional standard Gaussian concentrates on,
    the shape of :func:`sphere_radii`."""
    d = math.prod(x.shape[2:])
    return jnp.full(x.shape[:2] + (1,) * (x.ndim - 2), math.sqrt(d), x.dtype)


def spherical_update(
    optimizer: optax.GradientTransformation,
    params: chex.ArrayTree,
    opt_state: optax.OptState,
    grads: chex.ArrayTree,
    radii: chex.ArrayTree,
) -> tuple[chex.ArrayTree, optax.OptState]:
    """One ``SphericalOptimizer.step()``: the inner update, then every leaf projected back.

    The inner state (e.g. Adam's moments) is not touched by the projection, as the reference.
    This is the path the search should use. An ``optax.GradientTransformation`` wrapper cannot
    be exact: it must return ``project(p + u) - p`` as its update, and ``optax.apply_updates``
    then adds that back to p, which does not round-trip in float32.

    Args:
      optimizer: the inner optimizer (e.g. from :func:`make_optimizer`).
      params: pytree of ``[B, K, ...]`` arrays (all of them trainable and projected).
      opt_state: ``optimizer``'s state for params.
      grads: same structure as params.
      radii: ``init_radii`` of the initial params.

    Returns:
      ``(new_params, new_opt_state)``.
    """
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    params = jax.tree.map(project, params, radii)
    return params, opt_state


# ---------------------------------------------------------------------------------------------
# Inner optimizers with torch semantics.


class TorchAdamState(NamedTuple):
    """State of :func:`torch_adam` / :func:`torch_adamax`.

    count: int32 scalar, number of updates done (torch's ``step`` before the increment).
    mu: first moment, like params. nu: second moment (adam) or infinity norm (adamax).
    """

    count: jax.Array
    mu: optax.Updates
    nu: optax.Updates


def _init_state(params: optax.Params) -> TorchAdamState:
    zeros = lambda: jax.tree.map(jnp.zeros_like, params)  # noqa: E731
    return TorchAdamState(jnp.zeros([], jnp.int32), zeros(), zeros())


def _bias_correction(decay: float, t: jax.Array) -> jax.Array:
    """``1 - decay**t`` without float32 cancellation (torch computes it in Python float64).

    ``1 - 0.999**2`` in float32 loses ~4 digits (1e-5 relative error in Adam's second step);
    ``-expm1(t log(decay))`` keeps float32's relative precision.
    """
    return -jnp.expm1(t.astype(jnp.float32) * math.log(decay))


def _lr_at(learning_rate: optax.ScalarOrSchedule, count: jax.Array) -> jax.Array:
    # Schedules are indexed by the number of updates done so far: torch's LambdaLR uses f(j)
    # for the 0-based update j.
    return learning_rate(count) if callable(learning_rate) else jnp.asarray(learning_rate)


def torch_adam(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """``torch.optim.Adam`` (no weight decay, no amsgrad), in torch's operation order.

    With t = count + 1: ``m = b1 m + (1-b1) g``; ``v = b2 v + (1-b2) g^2``;
    ``p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)`` (eps outside the square root).
    ``optax.adam(lr, eps_root=0)`` is the same formula, but it computes ``1 - b2^t`` in float32,
    which cancels (relative error ~3e-5 at t = 2, visible in the fixture's second Adam step);
    here the bias corrections keep full float32 precision, as torch's float64 ones.
    """

    def update_fn(
        updates: optax.Updates, state: TorchAdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, TorchAdamState]:
        del params
        t = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * (g * g), state.nu, updates)
        step_size = _lr_at(learning_rate, state.count) / _bias_correction(b1, t)
        bc2_sqrt = jnp.sqrt(_bias_correction(b2, t))
        new_updates = jax.tree.map(
            lambda m, v: -step_size * (m / (jnp.sqrt(v) / bc2_sqrt + eps)), mu, nu
        )
        return new_updates, TorchAdamState(t, mu, nu)

    return optax.GradientTransformation(_init_state, update_fn)


def torch_adamax(
    learning_rate: optax.ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
    """``torch.optim.Adamax``: eps inside the max, unlike ``optax.adamax``.

    With t = count + 1: ``m = b1 m + (1-b1) g``; ``u = max(b2 u, |g| + eps)``;
    ``p -= lr/(1-b1^t) * m / u``.
    """

    def update_fn(
        updates: optax.Updates, state: TorchAdamState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, TorchAdamState]:
        del params
        t = state.count + 1
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda u, g: jnp.maximum(b2 * u, jnp.abs(g) + eps), state.nu, updates)
        clr = _lr_at(learning_rate, state.count) / _bias_correction(b1, t)
        new_updates = jax.tree.map(lambda m, u: -clr * (m / u), mu, nu)
        return new_updates, TorchAdamState(t, mu, nu)

    return optax.GradientTransformation(_init_state, update_fn)


def make_optimizer(
    opt_name: str, learning_rate: optax.ScalarOrSchedule
) -> optax.GradientTransformation:
    """PULSE's inner optimizer ``opt_name`` with torch defaults.

    Args:
      opt_name: "adam" (betas (0.9, 0.999), eps 1e-8), "adamax" (same, torch's eps placement),
        "sgd", or "sgdm" (momentum 0.9, dampening 0, no Nesterov; torch's first-step buffer = g
        equals optax's zero-initialized trace g + 0.9 * 0 exactly).
      learning_rate: a float, or an optax schedule of the 0-based update count.

    Raises:
      ValueError: unknown name.
    """
    if opt_name == "adam":
        return torch_adam(learning_rate)
    if opt_name == "adamax":
        return torch_adamax(learning_rate)
    if opt_name == "sgd":
        return optax.sgd(learning_rate)
    if opt_name == "sgdm":
        return optax.sgd(learning_rate, momentum=0.9, nesterov=False)
    raise ValueError(f"unknown optimizer {opt_name!r}; valid names: {', '.join(OPTIMIZERS)}")


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules.


def _check_schedule(name: str, steps: int) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr schedule {name!r}; valid names: {', '.join(SCHEDULES)}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")


def lr_multiplier(j: int, steps: int, name: str) -> float:
    """The factor f(j) of PULSE's schedule ``name`` at update j, in Python float64 arithmetic.

    ``fixed``: 1. ``linear1cycle``: ``(9 (1 - 2|j/S - 1/2|) + 1) / 10`` (0.1 -> 1 at S/2 -> 0.1).
    ``linear1cycledrop``: the same triangle over 0.9 S for j < 0.9 S, then
    ``0.1 + (j - 0.9 S)/(0.1 S) * (0.001 - 0.1)`` (towards 0.001 at S, never reached).
    The same operation order as the reference's lambdas, so the values are bit-identical.
    """
    _check_schedule(name, steps)
    x = j
    if name == "fixed":
        return 1.0
    if name == "linear1cycle":
        return (9 * (1 - abs(x / steps - 1 / 2) * 2) + 1) / 10
    if x < 0.9 * steps:
        return (9 * (1 - abs(x / (0.9 * steps) - 1 / 2) * 2) + 1) / 10
    return 1 / 10 + (x - 0.9 * steps) / (0.1 * steps) * (1 / 1000 - 1 / 10)


def make_schedule(name: str, steps: int, learning_rate: float) -> optax.Schedule:
    """``count -> learning_rate * f(count)`` in float32, jit-safe for a traced count.

    Args:
      name: one of "fixed", "linear1cycle", "linear1cycledrop".
      steps: total number of updates S (a Python int; static).
      learning_rate: the base learning rate (PULSE default 0.4).

    Returns:
      An optax schedule: int count (0-based update index) -> float32 scalar. Matches
      ``learning_rate * lr_multiplier(count, steps, name)`` to float32 rounding.
    """
    _check_schedule(name, steps)
    base = float(learning_rate)
    # Python float64 constants, rounded once to float32 where they meet the traced count.
    s, s9, s1 = float(steps), 0.9 * steps, 0.1 * steps

    def schedule(count: chex.Numeric) -> jax.Array:
        x = jnp.asarray(count, jnp.float32)
        if name == "fixed":
            f = jnp.ones_like(x)
        elif name == "linear1cycle":
            f = (9 * (1 - jnp.abs(x / s - 0.5) * 2) + 1) / 10
        else:
            tri = (9 * (1 - jnp.abs(x / s9 - 0.5) * 2) + 1) / 10
            drop = 0.1 + (x - s9) / s1 * (1 / 1000 - 1 / 10)
            f = jnp.where(x < s9, tri, drop)
        return base * f

    return schedule
