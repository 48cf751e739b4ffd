"""StyleGAN v1 (Karras et al. 2019) generator as used by PULSE, in Flax, NHWC.

Everything is derived from a frozen :class:`GeneratorConfig` (also known as
:data:`StyleGANConfig`, the same class): the number of style layers
``L = 2 * log2(resolution) - 2``, the width of every block and the noise shapes. Nothing
here reads files or knows about the PULSE search.

Parameters are stored *raw*, exactly as the reference (and NVIDIA's TF checkpoints) stores
them; the equalized-learning-rate multipliers are applied at every forward pass, as the
reference does, so imported weights are bit-identical to the source files:

* dense ``kernel`` ``[in, out]`` (the reference's ``[out, in]`` transposed), ``bias [out]``;
* conv ``kernel`` ``[kh, kw, in, out]`` (HWIO; the reference's OIHW transposed), ``bias [out]``;
* the 4x4 block's ``const`` ``[1, 4, 4, C]`` and input ``bias [C]``;
* per epilogue ``noise_strength [C]`` and ``style`` dense ``[D, 2C]``.

Modules: ``config`` (the architecture), ``layers`` (LeakyReLU, the norms, the equalized-lr
dense and conv layers, the epilogue; ``lrelu`` and ``pixel_norm`` are shared with
:mod:`pulse_jax.stylegan2`), ``convs`` (the convolutions: direct and sub-pixel upsampling,
prepared kernels), ``network`` (the mapping and synthesis networks, the noise inputs),
``params`` (random init, shapes). Pure entry points: :func:`synthesize` and
:func:`map_latents`. The ``Synthesis`` and ``Mapping`` modules sow each block's output under
``"intermediates"`` for debugging.
"""

from pulse_jax.stylegan import convs
from pulse_jax.stylegan.config import FAMILY, GeneratorConfig, StyleGANConfig
from pulse_jax.stylegan.layers import (EqualizedConv, EqualizedDense, LayerEpilogue, Params,
                                       effective_kernel, instance_norm, lrelu, pixel_norm)
from pulse_jax.stylegan.network import (InputBlock, Mapping, Synthesis, UpBlock, map_latents,
                                        mapping_apply, noise_normal, noise_zeros,
                                        prepare_synthesis, synthesis_prepared, synthesize)
from pulse_jax.stylegan.params import init_params, param_shapes

__all__ = [
    "FAMILY", "EqualizedConv", "EqualizedDense", "GeneratorConfig", "InputBlock",
    "LayerEpilogue", "Mapping", "Params", "StyleGANConfig", "Synthesis", "UpBlock", "convs",
    "effective_kernel", "init_params", "instance_norm", "lrelu", "map_latents",
    "mapping_apply", "noise_normal", "noise_zeros", "param_shapes", "pixel_norm",
    "prepare_synthesis", "synthesis_prepared", "synthesize",
]
