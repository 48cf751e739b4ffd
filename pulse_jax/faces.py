"""The faces of a batch: which input, which id, which output name (see
:mod:`pulse_jax.batch`, step 1, for the naming and id rules).

An input's name becomes part of output paths (``{name}.png``, the frames folder
``{name}/HR``, an aligned photo's ``{name}_{k}.png``), so it is first made a plain file name
(:func:`safe_stem`) and then unique (:func:`unique_names`): no name can leave the output
folder, hide, or land on another face's files or the folder's manifests.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Face", "at_least_one", "plan_faces", "safe_stem", "unique_names"]

# Path separators (either OS's), NUL and the other control characters.
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")
_LEADING_DOTS = re.compile(r"^\.+")
# What an output folder holds besides faces: a name must not be (or make a folder named)
# one of these. Our temporary and lock files start with "." and safe names never do.
_RESERVED = re.compile(r"manifest(\.part\d+of\d+)?\.(jsonl|done)")


def at_least_one(name: str, value: Any) -> int:
    """``int(value)``, or ValueError naming ``name`` unless it is >= 1."""
    if int(value) < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")
    return int(value)


def safe_stem(stem: str) -> str:
    """``stem`` as one plain file name: path separators (``/``, ``\\``), NUL and control
    characters become ``_``, and so do leading dots (``..`` -> ``__``, ``.x`` -> ``_x``), so
    the name is never ``.``/``..``, a path, or a hidden file; ``""`` -> ``"_"``. A stem that
    is already plain is returned unchanged."""
    s = _UNSAFE.sub("_", stem)
    s = _LEADING_DOTS.sub(lambda m: "_" * len(m.group()), s)
    return s or "_"


def unique_names(bases: Sequence[str], derived: Callable[[str], list[str]]) -> list[str]:
    """One name per base, in order: the base itself, or ``{base}-2``, ``{base}-3``, ... when
    one of its ``derived(name)`` entries (lower case: the files it makes) is taken by an
    earlier name or is a reserved output file (``manifest.jsonl``, manifest parts)."""
    taken: set[str] = set()
    out = []
    for base in bases:
        name, j = base, 1
        while any(f in taken or _RESERVED.fullmatch(f) for f in derived(name)):
            j += 1
            name = f"{base}-{j}"
        taken.update(derived(name))
        out.append(name)
    return out


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
    # The face's files and its frames folder ({name}/HR, {name}/LR).
    return [f"{name}.png".lower(), f"{name}_lr.png".lower(), f"{name}_sheet.png".lower(),
            name.lower()]


def plan_faces(paths: Sequence[os.PathLike], duplicates: int = 1) -> list[Face]:
    """The faces for ``paths`` (in order), with ids and unique output names (module doc)."""
    d = at_least_one("duplicates", duplicates)
    paths = [pathlib.Path(p) for p in paths]
    bases = [safe_stem(p.stem) if d == 1 else f"{safe_stem(p.stem)}_{k + 1}"
             for p in paths for k in range(d)]
    names = unique_names(bases, _derived)
    return [Face(face_id=i * d + k, input=p, name=names[i * d + k], duplicate=k)
            for i, p in enumerate(paths) for k in range(d)]
