"""The faces of a batch: which input, which id, which output name (see
:mod:`pulse_jax.batch`, step 1, for the naming and id rules).

A name is made a plain file name and then unique with its derived files by
:func:`pulse_jax.files.safe_stem` and :func:`pulse_jax.files.unique_names`, the rules the
aligner names its photos by too.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any

from pulse_jax.files import safe_stem, unique_names

__all__ = ["Face", "at_least_one", "plan_faces"]


def at_least_one(name: str, value: Any) -> int:
    """``int(value)``, or ValueError naming ``name`` unless it is >= 1."""
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Face:
    """One unit of work: duplicate ``duplicate`` of input file ``input``."""

    face_id: int            # index in the full planned list (= file index * duplicates + k)
    input: pathlib.Path
    name: str               # output stem: {name}.png, {name}_lr.png, {name}_sheet.png
    duplicate: int = 0      # k in [0, duplicates)

    def files(self) -> dict[str, str]:
        return {"hr": f"{self.name}.png", "lr": f"{self.name}_lr.png",
                "sheet": f"{self.name}_sheet.png",
                "variability": f"{self.name}_variability.png"}


def _derived(name: str) -> list[str]:
    # The face's files and its frames folder ({name}/HR, {name}/LR).
    return [f"{name}.png".lower(), f"{name}_lr.png".lower(), f"{name}_sheet.png".lower(),
            f"{name}_variability.png".lower(), name.lower()]


def plan_faces(paths: Sequence[os.PathLike], duplicates: int = 1) -> list[Face]:
    """The faces for ``paths`` (in order), with ids and unique output names (module doc)."""
    d = at_least_one("duplicates", duplicates)
    paths = [pathlib.Path(p) for p in paths]
    bases = [safe_stem(p.stem) if d == 1 else f"{safe_stem(p.stem)}_{k + 1}"
             for p in paths for k in range(d)]
    names = unique_names(bases, _derived)
    return [Face(face_id=i * d + k, input=p, name=names[i * d + k], duplicate=k)
            for i, p in enumerate(paths) for k in range(d)]
