"""What the search compares against: an observation and the operator that made it, and the
data-term quantities read from the operator (the mask-normalised error, the noise level).

Data term in observation space (docs/degradations.md, "The data term")::

    mse(y_hat, y) = sum_{h,w,c} m (y_hat - y)^2 / (C * sum_{h,w} m)     m: observed pixels
                                                                          (1 everywhere
                                                                          without a mask)
    floor = eps + sigma^2                  sigma: the noise(sigma) of the operator, else 0

The L2 term is ``max(mse, floor)`` and a face succeeds when ``mse <= floor``. Without a mask
``mse`` is the plain mean, computed exactly as the reference's L2.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.degrade.operators import Mask, Noise, Operator, flatten

__all__ = ["Observation", "apply_rows", "as_observation", "data_mse", "noise_variance",
           "observation_l2", "observed_mask", "per_row", "take_rows"]


def _has_leaves(op: Operator) -> bool:
    return bool(jax.tree_util.tree_leaves(op))


def apply_rows(op: Operator, x: jax.Array) -> jax.Array:
    """Row i of ``x`` ``[B, H, W, C]`` through row i of ``op`` (leaves ``[B, ...]``); an
    operator without leaves is applied to the whole batch at once."""
    if not _has_leaves(op):
        return op(x)
    return jax.vmap(lambda o, xi: o(xi[None])[0])(op, x)


def observed_mask(op: Operator) -> Optional[jax.Array]:
    """The observed-pixel mask ``[..., h, w, 1]`` of ``op`` (in observation space), or None."""
    for o in flatten(op):
        if isinstance(o, Mask):
            return o.mask
    return None


def noise_variance(op: Operator) -> Any:
    """``sigma^2`` of the operator's ``noise(sigma)`` (a scalar, or ``[B]`` per row), else 0."""
    for o in flatten(op):
        if isinstance(o, Noise):
            return jnp.square(jnp.asarray(o.sigma, jnp.float32))
    return 0.0


def _observed_mean(op: Operator, err: jax.Array, rows: bool) -> jax.Array:
    """Per-face mean ``[B]`` of the elementwise error ``err`` ``[B, h, w, c]`` over the
    observed pixels of ``op``'s mask (all pixels without one)."""
    m = observed_mask(op)
    if m is None:
        return jnp.mean(err, axis=tuple(range(1, err.ndim)))
    m = jnp.asarray(m, err.dtype)
    m = jnp.broadcast_to(m if rows else m[None], err.shape[:3] + (1,))
    return jnp.sum(err * m, axis=(1, 2, 3)) / (jnp.sum(m, axis=(1, 2, 3)) * err.shape[-1])


def data_mse(op: Operator, y_hat: jax.Array, y: jax.Array, *, rows: bool = False) -> jax.Array:
    """Per-face mean squared error ``[B]`` of ``y_hat`` against ``y`` (both ``[B, h, w, c]``)
    over the observed pixels of ``op``'s mask (module doc). ``rows``: the mask has a leading
    ``B`` axis (a per-row operator)."""
    return _observed_mean(op, jnp.square(y_hat - y), rows)


def data_mae(op: Operator, y_hat: jax.Array, y: jax.Array, *, rows: bool = False) -> jax.Array:
    """As :func:`data_mse` with absolute errors (for the L1 term)."""
    return _observed_mean(op, jnp.abs(y_hat - y), rows)


def observation_l2(op: Operator, hr: Any, observed: Any) -> np.ndarray:
    """The ``l2`` the search reports for HR images ``hr`` ``[N, H, W, C]`` in [0, 1] and the
    observation ``observed`` ``[N, h, w, c]``: :func:`data_mse` of ``op(hr)``. ``op`` is one
    operator for all faces (leaves without a face axis)."""
    hr = jnp.asarray(hr, jnp.float32)
    return np.asarray(data_mse(op, op(hr), jnp.asarray(observed, jnp.float32)))


@flax.struct.dataclass
class Observation:
    """The search's reference for a batch of ``B`` rows: ``y`` ``[B, h, w, c]`` and ``op``,
    whose leaves all have a leading ``B`` axis (row i was made by row i's operator)."""

    y: jax.Array
    op: Operator

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.y.shape)

    def apply(self, x: jax.Array) -> jax.Array:
        """``[B, H, W, C]`` -> the observation space, row by row."""
        return apply_rows(self.op, x)

    def mse(self, y_hat: jax.Array) -> jax.Array:
        return data_mse(self.op, y_hat, self.y, rows=True)

    def mae(self, y_hat: jax.Array) -> jax.Array:
        return data_mae(self.op, y_hat, self.y, rows=True)

    def noise_variance(self) -> Any:
        """``[B]`` (or 0.0 without noise)."""
        return noise_variance(self.op)


@flax.struct.dataclass
class _Function(Operator):
    """A plain function ``[B, H, W, C] -> [B, h, w, c]`` as an operator without leaves (no
    mask, no noise), so that an array and the function that made it are an Observation."""

    fn: Callable[[jax.Array], jax.Array] = flax.struct.field(pytree_node=False)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fn(x)

    def out_shape(self, hr_shape):
        x = jax.ShapeDtypeStruct(tuple(int(s) for s in hr_shape), jnp.float32)
        return tuple(jax.eval_shape(self.fn, x).shape)

    def describe(self) -> str:
        return getattr(self.fn, "__name__", "function")


def as_observation(ref: Any, op: Optional[Callable[[jax.Array], jax.Array]]) -> Observation:
    """``ref`` as an :class:`Observation`: an Observation as it is; an array ``y``
    ``[B, h, w, c]`` with the ``op`` that made it, an :class:`Operator` (one for every row:
    no leaves, or leaves ``[B, ...]``) or any function ``[B, H, W, C] -> [B, h, w, c]``.
    ValueError for an array without ``op``."""
    if isinstance(ref, Observation):
        return ref
    if op is None:
        raise ValueError("a reference array needs the operator that made it (or pass an "
                         "Observation)")
    return Observation(ref, op if isinstance(op, Operator) else _Function(op))


def per_row(op: Operator, n: int) -> Operator:
    """``op`` with every leaf broadcast to a leading axis of ``n`` rows (numpy)."""
    return jax.tree_util.tree_map(
        lambda leaf: np.broadcast_to(np.asarray(leaf), (n,) + np.shape(leaf)), op)


def take_rows(op: Operator, idx: Sequence[int]) -> Operator:
    """Rows ``idx`` of a per-row (stacked) operator (numpy leaves)."""
    idx = np.asarray(idx)
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[idx], op)
