"""How a batch runs and what it writes (everything but the search itself)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional

from pulse_jax import degrade
from pulse_jax.batch.faces import at_least_one

__all__ = ["BatchOptions"]


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """How a batch runs and what it writes (everything but the search itself).

    Attributes:
      seed: base of every random start (0 is a seed like any other).
      batch_size: faces per device per search call (the per-device batch shape).
      devices: the local devices to shard faces over: 0/None = all, an int n = the first n,
        a sequence of devices, or a ``jax.sharding.Mesh`` with axis ``"faces"``.
      duplicates: independent results per input, ``{stem}_{k}.png`` with distinct face ids.
      save_lr: also write ``{name}_lr.png``, the HR's downscale.
      save_contact_sheet: also write ``{name}_sheet.png`` (LR | best | every restart, and
        the variability map with 2 or more restarts).
      save_variability: also write ``{name}_variability.png`` (the face beside its
        variability map, :mod:`pulse_jax.search.variability`) and record the face's mean
        spread as ``variability``; needs 2 or more restarts (with one the record says so).
      save_intermediate: write trajectory frames under ``{name}/HR`` and ``{name}/LR``.
      write_failures: write the HR of faces that missed eps (the reference does not).
      merge_timeout_s: how long processes wait for each other before process 0 merges.
      progress: show a progress bar on stderr (``TQDM_DISABLE=1`` also hides it).
      degradation: the forward model, a :func:`pulse_jax.degrade.parse` string
        (docs/degradations.md), e.g. ``"blur(sigma=1.5)|downscale(factor=8,kernel=bicubic)"``;
        "" (default) is the reference's bicubic downscale with the factor of each input's
        size. With ``mask()`` each face's mask is read from ``{stem}_mask.png`` beside its
        input (those files are not faces); a face whose mask is missing or of the wrong size
        is recorded as a bad input. Inputs must have the shape the degradation makes of the
        generator's images (a gray one: a grayscale file).

    Raises:
      ValueError: a bad ``degradation`` string (before any face is touched), a
        ``batch_size`` or ``duplicates`` below 1, a ``merge_timeout_s`` that is not > 0.
    """

    seed: int = 0
    batch_size: int = 1
    devices: Any = 0
    duplicates: int = 1
    save_lr: bool = False
    save_contact_sheet: bool = False
    save_variability: bool = False
    save_intermediate: bool = False
    write_failures: bool = True
    merge_timeout_s: float = 7 * 24 * 3600.0
    progress: bool = True
    degradation: str = ""

    def __post_init__(self):
        # Parsed here once (a bad string fails before any face); the run uses `operator`.
        # Not a dataclass field: run_config builds its config block from the fields.
        object.__setattr__(self, "_operator",
                           degrade.parse(self.degradation) if self.degradation else None)
        at_least_one("batch_size", self.batch_size)
        at_least_one("duplicates", self.duplicates)
        if not self.merge_timeout_s > 0:
            raise ValueError(f"merge_timeout_s must be > 0, got {self.merge_timeout_s!r}")

    @property
    def operator(self) -> Optional[degrade.Operator]:
        """``degradation`` parsed (with its ``mask()`` placeholders, filled per face), or None
        when none is given: each face then gets the reference's bicubic downscale for its
        size (:func:`pulse_jax.batch.load.default_operator`)."""
        return self._operator
