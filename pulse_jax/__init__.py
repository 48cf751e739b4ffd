"""pulse-jax: PULSE generative-prior face super-resolution in JAX/Flax."""

from pulse_jax.generator import Generator, random_generator
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.weights import load_generator, save_generator

__all__ = ["Generator", "GeneratorConfig", "load_generator", "random_generator", "save_generator"]
