"""StyleGAN2 (Karras et al. 2020) generator, as NVIDIA's StyleGAN2-ADA PyTorch code defines it,
in JAX, NHWC, float32.

Everything is derived from a frozen :class:`StyleGAN2Config`, whose fields are the official
``Generator`` constructor arguments (``z_dim``, ``w_dim``, ``img_resolution``, the mapping and
synthesis keyword arguments), so a pickle's own arguments rebuild its architecture. Nothing
here reads files or knows about the PULSE search; docs/stylegan2.md describes the network.

Parameters keep the official names and raw values (the equalized-lr gains are applied at
every pass, as the official code does) in our layouts:

* dense ``weight`` ``[in, out]`` (official ``[out, in]`` transposed), ``bias [out]``;
* conv ``weight`` ``[k, k, in, out]`` (HWIO; official OIHW transposed), ``bias [out]``;
* ``b4.const`` ``[4, 4, C]`` (official ``[C, 4, 4]``); ``noise_strength`` ``[]``;
  ``noise_const`` ``[r, r]`` (the stored noise, used only by :func:`const_noise`);
  ``mapping.w_avg`` ``[w_dim]`` (the truncation centre).

Modules: ``config`` (the architecture), ``layers`` (the official ops: bias_act, FIR
up-sampling, modulated convolution), ``network`` (mapping, synthesis, truncation, noise),
``params`` (shapes, init, official names and layouts). Pure entry points:
:func:`synthesize`, :func:`map_latents`, :func:`truncate`.
"""

from pulse_jax.stylegan2.config import ARCHITECTURES, FAMILY, StyleGAN2Config
from pulse_jax.stylegan2.layers import lrelu
from pulse_jax.stylegan2.network import (check_inputs, const_noise, map_latents, mapping_apply,
                                         noise_normal, noise_zeros, prepare_synthesis,
                                         synthesis_apply, synthesis_prepared, synthesize,
                                         truncate)
from pulse_jax.stylegan2.params import (init_params, official_state_dict_shapes,
                                        param_shape_tree, param_shapes, params_from_state_dict,
                                        state_dict_from_params)

__all__ = [
    "ARCHITECTURES", "FAMILY", "StyleGAN2Config", "check_inputs", "const_noise", "init_params",
    "lrelu", "map_latents", "mapping_apply", "noise_normal", "noise_zeros",
    "official_state_dict_shapes", "param_shape_tree", "param_shapes", "params_from_state_dict",
    "prepare_synthesis", "state_dict_from_params", "synthesis_apply", "synthesis_prepared",
    "synthesize", "truncate",
]
