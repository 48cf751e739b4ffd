"""pulse-jax: PULSE generative-prior face super-resolution in JAX/Flax."""

from pulse_jax.generator import Generator, random_generator
from pulse_jax.stylegan import GeneratorConfig
from pulse_jax.weights import default_generator, load_generator, save_generator
from pulse_jax.search import Result, SearchConfig, upsample

__all__ = ["Generator", "GeneratorConfig", "Result", "SearchConfig", "default_generator",
           "load_generator", "random_generator", "save_generator", "upsample"]
