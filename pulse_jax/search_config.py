"""The old home of :mod:`pulse_jax.search.config` (:class:`SearchConfig` and its option
names), kept importable for the modules that still import it from here."""

from pulse_jax.search.config import (LOOPS, NOISE_TYPES, RETURN_IMAGES, SELECT_RULES, UPCONVS,
                                     NoisePlan, SearchConfig, parse_bad_noise_layers)

__all__ = ["LOOPS", "NOISE_TYPES", "NoisePlan", "RETURN_IMAGES", "SELECT_RULES", "SearchConfig",
           "UPCONVS", "parse_bad_noise_layers"]
