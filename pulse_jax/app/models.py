"""The models the app offers: the shipped one and every converted checkpoint in the cache
(:mod:`pulse_jax.weights.locate`), each loaded once and kept."""

from __future__ import annotations

import pathlib
import threading
from typing import Optional

from pulse_jax import weights
from pulse_jax.weights import locate
from pulse_jax.generator import Generator

__all__ = ["Models", "available_models"]


def _label(name: str, folder: pathlib.Path) -> str:
    try:
        r = int(weights.read_manifest(folder)["config"]["resolution"])
        return f"{name} ({r}x{r})"
    except (OSError, weights.CheckpointError, KeyError, TypeError, ValueError):
        return name


def available_models(cache_dir: str = "", checkpoint: str = "") -> dict[str, pathlib.Path]:
    """Label -> checkpoint folder: ``checkpoint`` first when given
    (:func:`pulse_jax.weights.resolve_checkpoint`'s choice), then the shipped model, then
    every folder of ``{cache}/checkpoints`` with a ``manifest.json`` (what ``pulse-jax
    convert`` writes). CheckpointError for a ``checkpoint`` that cannot be found."""
    found: dict[pathlib.Path, str] = {}
    if checkpoint:
        path = weights.resolve_checkpoint(checkpoint, cache_dir).resolve()
        found[path] = checkpoint if checkpoint in (locate.SHIPPED_NAME, locate.FFHQ_NAME) else path.name
    shipped = weights.default_checkpoint_path().resolve()
    if shipped.exists():
        found.setdefault(shipped, locate.SHIPPED_NAME)
    cache = weights.cache_home(cache_dir) / "checkpoints"
    if cache.is_dir():
        for d in sorted(cache.iterdir()):
            if (d / "manifest.json").is_file():
                found.setdefault(d.resolve(), d.name)
    return {_label(name, path): path for path, name in found.items()}


class Models:
    """The offered models by label, each generator loaded on first use and kept (a search
    of a model already loaded starts at once; its compiled programs are kept by JAX)."""

    def __init__(self, models: dict[str, pathlib.Path]):
        if not models:
            raise weights.CheckpointError("no generator checkpoint found: the shipped model "
                                          "is missing and the cache holds none")
        self.paths = dict(models)
        self._loaded: dict[str, Generator] = {}
        self._lock = threading.Lock()

    @property
    def labels(self) -> list[str]:
        return list(self.paths)

    def get(self, label: Optional[str]) -> tuple[Generator, pathlib.Path]:
        """The generator of ``label`` (None or "": the first) and its folder; ValueError for
        a label that is not offered."""
        label = label or self.labels[0]
        if label not in self.paths:
            raise ValueError(f"no model {label!r}; the app offers {self.labels}")
        with self._lock:
            if label not in self._loaded:
                self._loaded[label] = weights.load_generator(self.paths[label])
            return self._loaded[label], self.paths[label]
