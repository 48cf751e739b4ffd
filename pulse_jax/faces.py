"""The faces of a batch: which input, which id, which output name (see
:mod:`pulse_jax.batch`, step 1, for the naming and id rules)."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Sequence
from typing import Any

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
                "sheet": f"{self.name}_sheet.png"}


def _derived(name: str) -> list[str]:
    return [f"{name}.png".lower(), f"{name}_lr.png".lower(), f"{name}_sheet.png".lower()]


def plan_faces(paths: Sequence[os.PathLike], duplicates: int = 1) -> list[Face]:
    """The faces for ``paths`` (in order), with ids and unique output names (module doc)."""
    d = at_least_one("duplicates", duplicates)
    taken: set[str] = set()
    faces = []
    for i, p in enumerate(paths):
        p = pathlib.Path(p)
        for k in range(d):
            base = p.stem if d == 1 else f"{p.stem}_{k + 1}"
            name, j = base, 1
            while any(f in taken for f in _derived(name)):
                j += 1
                name = f"{base}-{j}"
            taken.update(_derived(name))
            faces.append(Face(face_id=i * d + k, input=p, name=name, duplicate=k))
    return faces
