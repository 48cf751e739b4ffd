"""PULSE's loss terms (``loss.py``; docs/reference.md, "Losses") as pure per-face functions, and
the parser of loss strings such as ``"100*L2+0.05*GEOCROSS"``.

Deviation in shape only: the reference SUMS every term over the batch; here every term is a
``[B]`` vector of per-face values (sum them to get the reference's scalars). Per-face values are
what a per-face success test and per-face best tracking need.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from pulse_jax.degrade import Degradation, Observation, as_observation

LOSS_NAMES = ("L2", "L1", "GEOCROSS")
DEFAULT_LOSS = "100*L2+0.05*GEOCROSS"

ParsedLoss = tuple[tuple[float, str], ...]
LossFn = Callable[
    [jax.Array, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array], jax.Array]
]


def l2(lr: jax.Array, ref: jax.Array, eps: float) -> jax.Array:
    """Per-face MSE clamped below at ``eps``.

    Args:
      lr: ``[B, h, w, C]`` degraded generated image (unclamped, ~[0, 1]).
      ref: ``[B, h, w, C]`` (or broadcastable) reference LR image in [0, 1].
      eps: the clamp; below it the term is constant, so its gradient is zero.

    Returns:
      ``[B]``: ``max(mean over (h, w, C) of (lr - ref)^2, eps)``.
    """
    mse = jnp.mean(jnp.square(lr - ref), axis=tuple(range(1, lr.ndim)))
    return jnp.maximum(mse, eps)


def l1(lr: jax.Array, ref: jax.Array, eps: float) -> jax.Array:
    """Per-face mean absolute error clamped below at ``eps``, times the reference's built-in 10.

    Args: as :func:`l2`.

    Returns:
      ``[B]``: ``10 * max(mean over (h, w, C) of |lr - ref|, eps)``.
    """
    mae = jnp.mean(jnp.abs(lr - ref), axis=tuple(range(1, lr.ndim)))
    return 10 * jnp.maximum(mae, eps)


def observed_l2(lr: jax.Array, obs: Observation, eps: float) -> jax.Array:
    """:func:`l2` in an operator's observation space: the mask-normalised MSE of ``lr``
    against ``obs.y``, clamped below at ``eps + sigma^2`` (``sigma`` the operator's noise
    level; docs/degradations.md, "The data term"). ``[B]``."""
    return jnp.maximum(obs.mse(lr), eps + obs.noise_variance())


def observed_l1(lr: jax.Array, obs: Observation, eps: float) -> jax.Array:
    """:func:`l1` in observation space: ``10 * max(mae, eps + sigma * sqrt(2 / pi))``, the
    expected absolute value of the noise taking the place of its variance. ``[B]``."""
    floor = eps + jnp.sqrt(obs.noise_variance()) * math.sqrt(2 / math.pi)
    return 10 * jnp.maximum(obs.mae(lr), floor)


def geocross(wplus: jax.Array) -> jax.Array:
    """PULSE's cross loss: mean squared pseudo-angle between all pairs of W+ rows.

    For every ordered pair (i, j) of rows, diagonal included:
    ``d_ij = 2 atan2(sqrt(|w_i - w_j|^2 + 1e-9), sqrt(|w_i + w_j|^2 + 1e-9))``
    (the angle between w_i and w_j only when their norms are equal; the rows are not normalized).
    The result is ``D/8 * mean_ij d_ij^2`` with D the row width (the reference hard-codes
    512/8 = 64 for D = 512). The 1e-9 keeps the diagonal's gradient finite.

    Args:
      wplus: ``[B, L, D]`` W+ latent (after PULSE's LeakyReLU map). A tiled latent should be
        passed broadcast to all L rows, as the reference does (its value is then ~1e-10).

    Returns:
      ``[B]`` per-face values. ``L == 1`` gives exactly 0, as the reference's special case.
    """
    b, num_rows, width = wplus.shape
    if num_rows == 1:
        return jnp.zeros((b,), wplus.dtype)
    x = wplus[:, None, :, :]  # [B, 1, L, D]
    y = wplus[:, :, None, :]  # [B, L, 1, D]
    a = jnp.sqrt(jnp.sum(jnp.square(x - y), axis=-1) + 1e-9)
    c = jnp.sqrt(jnp.sum(jnp.square(x + y), axis=-1) + 1e-9)
    d = 2 * jnp.arctan2(a, c)  # [B, L, L]
    return jnp.mean(jnp.square(d) * width, axis=(1, 2)) / 8


_SPLIT_TERMS = re.compile(r"(?<![0-9.][eE])\+")  # '+' that is not a number's exponent sign


def parse_loss(loss_str: str) -> ParsedLoss:
    """Parses a PULSE loss string into ``((weight, NAME), ...)``, in the order written.

    Reference semantics: terms separated by '+', each ``weight*NAME`` with NAME one of L2, L1,
    GEOCROSS; the total is ``sum(weight * term)``. A repeated NAME adds its weights, as in the
    reference. Weights must be finite (negative and zero weights are accepted as written).

    Lenient where the reference crashes but the meaning is unambiguous:
      * spaces around terms, weights and names are ignored (``"100 * L2 + 0.05 * GEOCROSS"``);
      * scientific notation, including a '+' exponent (``"1e-3*L2"``, ``"1e+2*L2"``);
      * a bare NAME means weight 1 (``"L2+0.05*GEOCROSS"``);
      * names are case-insensitive (``"100*l2"``).

    Raises:
      ValueError: on an empty string or term, a missing weight or name, more than one '*' in a
        term, a weight that is not a finite number, an unknown name, or a string without L2
        (the search tracks L2 to decide success). The message says what is wrong and what is
        valid.
    """
    valid = (
        f"expected terms 'weight*NAME' joined by '+', NAME one of {', '.join(LOSS_NAMES)}, "
        f"e.g. {DEFAULT_LOSS!r}"
    )
    if not isinstance(loss_str, str):
        raise ValueError(f"loss string must be a str, got {type(loss_str).__name__}; {valid}")
    if not loss_str.strip():
        raise ValueError(f"empty loss string; {valid}")
    parsed = []
    for term in _SPLIT_TERMS.split(loss_str):
        term = term.strip()
        if not term:
            raise ValueError(f"empty term in loss string {loss_str!r} (stray '+'?); {valid}")
        parts = [p.strip() for p in term.split("*")]
        if len(parts) == 1:
            weight_str, name = "1", parts[0]
        elif len(parts) == 2:
            weight_str, name = parts
        else:
            raise ValueError(f"term {term!r} has more than one '*'; {valid}")
        if not weight_str:
            raise ValueError(f"missing weight before '*' in term {term!r}; {valid}")
        if not name:
            raise ValueError(f"missing loss name after '*' in term {term!r}; {valid}")
        if name.upper() not in LOSS_NAMES:
            hint = " (the weight goes first)" if _is_number(name) else ""
            raise ValueError(f"unknown loss name {name!r} in term {term!r}{hint}; {valid}")
        try:
            weight = float(weight_str)
        except ValueError:
            raise ValueError(
                f"weight {weight_str!r} in term {term!r} is not a number; {valid}"
            ) from None
        if not math.isfinite(weight):
            raise ValueError(f"weight {weight_str!r} in term {term!r} is not finite; {valid}")
        parsed.append((weight, name.upper()))
    if not any(name == "L2" for _, name in parsed):
        raise ValueError(
            f"loss string {loss_str!r} has no L2 term; the search needs L2 to measure success "
            f"(add e.g. '+1*L2', or '+0*L2' to track it without optimizing it); {valid}"
        )
    return tuple(parsed)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def make_loss(loss_str: str, eps: float, degrade: Optional[Degradation] = None) -> LossFn:
    """Builds PULSE's loss for a loss string.

    Args:
      loss_str: see :func:`parse_loss`.
      eps: the clamp of the L2 and L1 data terms (PULSE default 2e-3); >= 0.
      degrade: the operator D, ``[B, H, W, C] -> [B, h, w, C]`` (a
        :class:`~pulse_jax.degrade.Operator` or any such function, e.g.
        :func:`~pulse_jax.degrade.make_degradation`'s), that made an array ``ref_lr``; None
        when every reference is an Observation.

    Returns:
      ``loss(gen_im01, ref_lr, wplus) -> (total, terms, lr_image)`` with
      ``gen_im01`` ``[B, H, W, C]`` = (rgb + 1) / 2, unclamped; ``ref_lr`` ``[B, h, w, C]`` in
      [0, 1] made by ``degrade``, or a :class:`~pulse_jax.degrade.Observation` (its own
      operator per row). Either way the data terms are measured in the observation space
      (:func:`observed_l2`, :func:`observed_l1`; without a mask or a noise model they are
      :func:`l2` and :func:`l1`, bit for bit); ``wplus`` ``[B, L, D]``. ``total`` is ``[B]`` =
      sum of weight * term in the string's order; ``terms`` maps each NAME in the string to
      its ``[B]`` value (unweighted); ``lr_image`` is ``D(gen_im01)``, ``[B, h, w, C]``,
      unclamped. Pure; jit and grad friendly.
    """
    parsed = parse_loss(loss_str)
    eps = float(eps)
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    names = tuple(dict.fromkeys(name for _, name in parsed))  # unique, in order

    def loss(
        gen_im01: jax.Array, ref_lr: Any, wplus: jax.Array
    ) -> tuple[jax.Array, dict[str, jax.Array], jax.Array]:
        obs = as_observation(ref_lr, degrade)
        lr_image = obs.apply(gen_im01)
        if lr_image.shape != obs.shape:
            raise ValueError(
                f"degraded image has shape {lr_image.shape} but the reference LR image has "
                f"shape {obs.shape}; check the degradation factor"
            )
        fns = {
            "L2": lambda: observed_l2(lr_image, obs, eps),
            "L1": lambda: observed_l1(lr_image, obs, eps),
            "GEOCROSS": lambda: geocross(wplus),
        }
        terms = {name: fns[name]() for name in names}
        total = jnp.zeros(gen_im01.shape[:1], lr_image.dtype)
        for weight, name in parsed:
            total = total + weight * terms[name]
        return total, terms, lr_image

    return loss
