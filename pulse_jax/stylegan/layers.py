"""StyleGAN v1's small layers, NHWC: LeakyReLU, pixel and instance norm, the equalized-lr dense
and conv layers (with the reference's nearest/fused x2 upsampling and blur), and the noise +
AdaIN epilogue. ``lrelu`` and ``pixel_norm`` are StyleGAN2's too (:mod:`pulse_jax.stylegan2`).

Parameters are raw, as the reference stores them; the equalized-lr multipliers are applied at
every pass (:mod:`pulse_jax.stylegan`)."""

from __future__ import annotations

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


def instance_norm(x: jax.Array, eps: float) -> jax.Array:
    """Per (sample, channel) over H x W, biased variance, no affine (torch InstanceNorm2d)."""
    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    centered = x - mean
    var = jnp.mean(jnp.square(centered), axis=(1, 2), keepdims=True)
    return centered * jax.lax.rsqrt(var + eps)


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


class LayerEpilogue(nn.Module):
    """noise -> LeakyReLU(0.2) -> instance norm -> style modulation (AdaIN)."""

    channels: int
    eps: float

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise: jax.Array) -> jax.Array:
        """x: ``[B, H, W, C]``; w: ``[B, D]`` (one W+ row); noise: ``[B, H, W, 1]``."""
        strength = self.param("noise_strength", nn.initializers.zeros, (self.channels,))
        x = x + strength * noise
        x = instance_norm(lrelu(x), self.eps)
        style = EqualizedDense(2 * self.channels, gain=1.0, name="style")(w)
        scale, shift = style[:, None, None, : self.channels], style[:, None, None, self.channels:]
        return x * (scale + 1.0) + shift
