"""Group labels of evaluation faces: UTKFace's file names, or a CSV of ``name,key=value,...``.

UTKFace names its images ``<age>_<gender>_<race>_<date>.jpg`` with the dataset's own codes
(gender 0 male, 1 female; race 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others: the
annotators' labels, kept in the dataset's words). :func:`utkface_labels` turns a name into
``{"age_band": ..., "gender": ..., "race": ...}``, leaving out a field the name lacks (a
few names have no race) rather than guessing it.
"""

from __future__ import annotations

import csv
import pathlib
from typing import Callable, Mapping, Optional, Union

__all__ = ["AGE_BANDS", "UTKFACE_GENDER", "UTKFACE_RACE", "age_band", "labeller",
           "read_labels_csv", "utkface_labels"]

UTKFACE_GENDER = {"0": "male", "1": "female"}
UTKFACE_RACE = {"0": "White", "1": "Black", "2": "Asian", "3": "Indian", "4": "Others"}
#: ``(lowest age, name)``: each band runs to the next one's lowest age.
AGE_BANDS = ((0, "0-9"), (10, "10-19"), (20, "20-39"), (40, "40-59"), (60, "60-79"),
             (80, "80+"))

Labels = dict[str, str]


def age_band(age: int) -> str:
    """The :data:`AGE_BANDS` name of an age in years."""
    if age < 0:
        raise ValueError(f"an age cannot be negative, got {age}")
    return [name for lo, name in AGE_BANDS if age >= lo][-1]


def utkface_labels(name: str) -> Labels:
    """The labels in a UTKFace file name (module doc); ValueError for a name not in that
    form."""
    parts = pathlib.Path(name).name.split("_")
    if len(parts) < 2 or not parts[0].isdigit():
        raise ValueError(f"{name!r} is not a UTKFace name (<age>_<gender>_<race>_<date>.jpg)")
    out = {"age_band": age_band(int(parts[0]))}
    if parts[1] in UTKFACE_GENDER:
        out["gender"] = UTKFACE_GENDER[parts[1]]
    if len(parts) >= 4 and parts[2] in UTKFACE_RACE:
        out["race"] = UTKFACE_RACE[parts[2]]
    return out


def read_labels_csv(path: Union[str, pathlib.Path]) -> dict[str, Labels]:
    """``{file name: {key: value}}`` from a CSV whose rows are ``name,key=value,...``
    (blank lines and lines starting with ``#`` are skipped). ValueError naming the line of a
    malformed or repeated entry."""
    out: dict[str, Labels] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f), 1):
            if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                continue
            name, labels = row[0].strip(), {}
            for cell in row[1:]:
                key, sep, value = cell.partition("=")
                if not sep or not key.strip() or not value.strip():
                    raise ValueError(f"{path}:{i}: {cell!r} is not key=value")
                labels[key.strip()] = value.strip()
            if name in out:
                raise ValueError(f"{path}:{i}: {name!r} is listed twice")
            out[name] = labels
    return out


def labeller(spec: Optional[str]) -> Callable[[str], Labels]:
    """The labels of a face's file name for ``--labels``: ``""``/None none, ``"utkface"`` its
    UTKFace name, else a CSV path (:func:`read_labels_csv`; a name it lacks gets none, its
    stem matches too)."""
    if not spec:
        return lambda name: {}
    if spec == "utkface":
        return utkface_labels
    table: Mapping[str, Labels] = read_labels_csv(spec)

    def of(name: str) -> Labels:
        return dict(table.get(name) or table.get(pathlib.Path(name).stem) or {})
    return of
