"""StyleGAN v1's small layers, NHWC: LeakyReLU, pixel and instance norm, the equalized-lr dense
and conv layers (with the reference's nearest/fused x2 upsampling and blur), and the noise +
AdaIN epilogue. ``lrelu`` and ``pixel_norm`` are StyleGAN2's too (:mod:`pulse_jax.stylegan2`).

Parameters are raw, as the reference stores them; the equalized-lr multipliers are applied at
every pass (:mod:`pulse_jax.stylegan`)."""

from __future__ import annotations

import functools
import math
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from pulse_jax.stylegan import convs

Params = Mapping[str, Any]

_SQRT2 = math.sqrt(2.0)
_LRELU_SLOPE = 0.2


def lrelu(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, x * _LRELU_SLOPE)


def pixel_norm(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``x / sqrt(mean(x**2, -1) + eps)``; x: ``[N, D]``."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def _moments(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """(mean, 1 / sqrt(biased variance + eps)) per (sample, channel) over H x W, two passes."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    return mean, jax.lax.rsqrt(var + eps)


def instance_norm(x: jax.Array, eps: float) -> jax.Array:
    """Per (sample, channel) over H x W, biased variance, no affine (torch InstanceNorm2d)."""
    mean, rstd = _moments(x, eps)
    return (x - mean) * rstd


def effective_kernel(kernel: jax.Array, gain: float, up: str = "none") -> jax.Array:
    """A raw HWIO conv kernel with its equalized-lr scale applied (spatially flipped for the
    reference's fused transposed conv)."""
    k, cin = kernel.shape[0], kernel.shape[2]
    w = kernel * (gain * (cin * k * k) ** -0.5)
    return w[::-1, ::-1] if up == "fused" else w


class EqualizedDense(nn.Module):
    """Dense layer with equalized learning rate: ``x @ (W * gain/sqrt(in) * lrmul) + b * lrmul``."""

    features: int
    gain: float = _SQRT2
    lrmul: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.normal(1.0 / self.lrmul),
                            (fan_in, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        w_mul = self.gain * fan_in**-0.5 * self.lrmul
        return x @ (kernel * w_mul) + bias * self.lrmul


class EqualizedConv(nn.Module):
    """Equalized-lr conv with the reference's optional nearest/fused x2 upsampling and blur.

    ``up="none"``: conv + bias. ``up="nearest"``: nearest x2, conv (no bias), blur, + bias.
    ``up="fused"``: the reference's transposed conv, i.e. nearest x2 then the spatially
    flipped kernel, blur, + bias. ``upconv`` picks how an upsampling conv is computed
    ("direct" or "subpixel", see :mod:`pulse_jax.stylegan.convs`); the function is the same.
    ``prepared``: the params are :func:`prepare_synthesis`'s ``{"w", "w_t", "bias"}``.
    """

    features: int
    kernel_size: int = 3
    gain: float = _SQRT2
    up: str = "none"
    upconv: str = "direct"
    prepared: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.up not in ("none", "nearest", "fused"):
            raise ValueError(f"unknown upsampling {self.up!r}")
        up = self.up != "none"
        if self.prepared:
            w = {name: self._prepared_param(name) for name in ("w", "w_t")}
            bias = self._prepared_param("bias")
            y = convs.apply_prepared(x, w, up, self.upconv)
        else:
            k = self.kernel_size
            kernel = self.param("kernel", nn.initializers.normal(1.0),
                                (k, k, x.shape[-1], self.features))
            bias = self.param("bias", nn.initializers.zeros, (self.features,))
            w = effective_kernel(kernel, self.gain, self.up)
            if self.is_mutable_collection("prepared"):  # prepare_synthesis is asking
                for name, value in convs.prepare_conv(w, up, self.upconv).items():
                    self.put_variable("prepared", name, value)
            y = convs.upsample_conv(x, w, self.upconv) if up else convs.conv2d(x, w)
        return (convs.blur(y) if up else y) + bias

    def _prepared_param(self, name: str) -> jax.Array:
        value = self.get_variable("params", name)
        if value is None:
            raise ValueError("a prepared Synthesis takes the params of prepare_synthesis "
                             f"(no {name!r} in {'/'.join(self.scope.path)})")
        return value


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def epilogue(x: jax.Array, noise: jax.Array, strength: jax.Array, scale: jax.Array,
             shift: jax.Array, eps: float) -> jax.Array:
    """``instance_norm(lrelu(x + strength * noise)) * (scale + 1) + shift``, NHWC.

    x ``[B, H, W, C]``, noise ``[B, H, W, 1]``, strength ``[C]``, scale and shift
    ``[B, 1, 1, C]``. The forward pass is :func:`instance_norm`'s arithmetic, op for op; the
    backward pass is written out (a ``jax.custom_vjp``) so that it reads the activations
    twice, not once per op of the forward pass: it needs only ``sum(g)`` and
    ``sum(g * xhat)`` per (sample, channel), which are also the gradients of shift and
    scale, and recomputes ``xhat`` from ``x`` rather than storing it
    (docs/performance.md, "The layer epilogue's gradient"). Its gradients equal autodiff's
    up to float rounding, not bit for bit.
    """
    return _epilogue_fwd(x, noise, strength, scale, shift, eps)[0]


def _epilogue_fwd(x, noise, strength, scale, shift, eps):
    a = lrelu(x + strength * noise)
    mean, rstd = _moments(a, eps)
    return ((a - mean) * rstd) * (scale + 1.0) + shift, (x, noise, strength, scale, mean, rstd)


def _epilogue_bwd(eps, res, g):
    x, noise, strength, scale, mean, rstd = res
    pre = x + strength * noise
    xhat = (lrelu(pre) - mean) * rstd                  # the forward's values, bit for bit
    n = x.shape[1] * x.shape[2]
    g_shift = jnp.sum(g, axis=(1, 2), keepdims=True)
    g_scale = jnp.sum(g * xhat, axis=(1, 2), keepdims=True)
    # Instance norm's input gradient: rstd * (gy - mean(gy) - xhat * mean(gy * xhat)) with
    # gy = g * (scale + 1); both means are the two sums above, times (scale + 1) / n.
    g_a = ((scale + 1.0) * rstd) * (g - g_shift / n - xhat * (g_scale / n))
    g_pre = jnp.where(pre >= 0, g_a, g_a * _LRELU_SLOPE)
    g_noise = _sum_to(jnp.sum(g_pre * strength, axis=-1, keepdims=True), noise.shape)
    g_strength = jnp.sum(g_pre * noise, axis=(0, 1, 2))
    # shift has scale's shape
    return (g_pre, g_noise, g_strength, _sum_to(g_scale, scale.shape),
            _sum_to(g_shift, scale.shape))


def _sum_to(g: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """``g`` summed over the axes along which an operand of ``shape`` was broadcast."""
    axes = tuple(i for i, (a, b) in enumerate(zip(g.shape, shape)) if b == 1 and a != 1)
    return jnp.sum(g, axis=axes, keepdims=True) if axes else g


epilogue.defvjp(_epilogue_fwd, _epilogue_bwd)


EPILOGUE_GRADS = ("autodiff", "fused")


class LayerEpilogue(nn.Module):
    """noise -> LeakyReLU(0.2) -> instance norm -> style modulation (AdaIN).

    ``grad``: "autodiff" (JAX differentiates the ops) or "fused" (:func:`epilogue`, its
    gradient written out: fewer passes over the activations). The forward values are the
    same; the gradients agree up to float rounding.
    """

    channels: int
    eps: float
    grad: str = "autodiff"

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array) -> jax.Array:
        """x: ``[B, H, W, C]``; w: ``[B, D]`` (one W+ row); noise: ``[B, H, W, 1]``."""
        if self.grad not in EPILOGUE_GRADS:
            raise ValueError(f"grad must be one of {EPILOGUE_GRADS}, got {self.grad!r}")
        strength = self.param("noise_strength", nn.initializers.zeros, (self.channels,))
        style = EqualizedDense(2 * self.channels, gain=1.0, name="style")(w)
        scale, shift = style[:, None, None, : self.channels], style[:, None, None, self.channels:]
        if self.grad == "fused":
            return epilogue(x, noise, strength, scale, shift, self.eps)
        x = x + strength * noise
        x = instance_norm(lrelu(x), self.eps)
        return x * (scale + 1.0) + shift
