"""Degradation operators: what turned a high-resolution face into the observation.

* :mod:`.downscale`: the downscales as plain functions, among them PULSE's exact bicubic
  downscale (``bicubic_downscale``; docs/reference.md, "The downscale operator") and
  ``make_degradation(name, factor)``;
* :mod:`.operators`: operators as small pytrees (downscale, blur, gray, mask, noise),
  ``compose``, ``stack`` (per-face operators), ``adjoint``;
* :mod:`.grammar`: ``parse(text)``, the runner's ``--config.degradation`` string;
* :mod:`.observation`: the data term in observation space (mask-normalised error, noise).

docs/degradations.md describes the grammar, each operator and the data term.
"""

from pulse_jax.degrade.downscale import (DEGRADATIONS, Degradation, area_downscale,
                                         bicubic_downscale, bicubic_kernel, bicubic_matrix,
                                         cubic, gaussian_downscale, gaussian_matrix,
                                         gaussian_sigma, make_degradation)
from pulse_jax.degrade.grammar import GRAMMAR, parse, read_mask
from pulse_jax.degrade.observation import (Observation, apply_rows, as_observation, data_mse,
                                           noise_variance, observation_l2, observed_mask,
                                           per_row, take_rows)
from pulse_jax.degrade.operators import (GRAY_WEIGHTS, Blur, Compose, Downscale, Gray, Mask,
                                         Noise, Operator, adjoint, blur, blur_kernel, compose,
                                         downscale, flatten, gaussian_psf, gray,
                                         has_placeholder, mask, noise, read_psf, stack)

__all__ = [
    "DEGRADATIONS", "GRAMMAR", "GRAY_WEIGHTS", "Blur", "Compose", "Degradation", "Downscale",
    "Gray", "Mask", "Noise", "Observation", "Operator", "adjoint", "apply_rows", "as_observation",
    "area_downscale", "bicubic_downscale", "bicubic_kernel", "bicubic_matrix", "blur",
    "blur_kernel", "compose", "cubic", "data_mse", "downscale", "flatten", "gaussian_downscale",
    "gaussian_matrix", "gaussian_psf", "gaussian_sigma", "gray", "has_placeholder",
    "make_degradation", "mask", "noise", "noise_variance", "observation_l2", "observed_mask",
    "parse", "per_row", "read_mask", "read_psf", "stack", "take_rows",
]
