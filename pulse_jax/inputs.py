"""Which LR faces a run reads, and which sizes PULSE can upscale.

``discover_inputs`` turns what a user typed into a list of files::

    discover_inputs("input/")            # folder: *.png, *.jpg, *.jpeg (any case), not recursive
    discover_inputs("input/*_0.png")     # glob pattern (``**`` recurses)
    discover_inputs("@faces.txt")        # list file: one path per line, relative to the list
    discover_inputs("faces.txt")         #   file's folder; blank lines and ``#`` lines skipped
    discover_inputs(["a.png", "more/"])  # several of the above, concatenated

Folders and globs are sorted by file name so a run is deterministic (the reference used the
file system's order, which differs between machines). List files keep their own order, and the
files they name are not opened here: a missing one is reported by ``images.load_image`` like any
other bad file, so it does not stop a batch.

``check_size(S, resolution)`` accepts an LR side ``S`` only when ``resolution / S`` is an integer
of at least 2, which PULSE's bicubic downscale needs; its message lists the sizes that work
(``valid_lr_sizes``).

Every problem raises ``ImageError``, a ``ValueError`` whose message names the file (when there is
one) and the problem, so a batch can record it and go on with the other faces.
"""

from __future__ import annotations

import glob
import os
import pathlib
from collections.abc import Sequence

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "ImageError", "check_size", "discover_inputs", "valid_lr_sizes"]

PathLike = str | os.PathLike

#: File name endings (compared case-insensitively) that folders and globs yield.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class ImageError(ValueError):
    """A problem with one input image (or an input specification), with a human message.

    Attributes:
      path: the file concerned, or ``None`` when the problem is not about one file
        (for example ``check_size`` called on its own).
      message: the description of the problem, without the path.

    ``str(err)`` is ``"<path>: <message>"`` (or just the message when there is no path).
    """

    def __init__(self, path: PathLike | None, message: str):
        self.path = None if path is None else pathlib.Path(path)
        self.message = message
        super().__init__(self.path, message)  # args stay picklable across processes

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path is not None else self.message


def _is_image_name(p: pathlib.Path) -> bool:
    return p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")


def _read_list_file(list_path: pathlib.Path) -> list[pathlib.Path]:
    if not list_path.is_file():
        raise ImageError(list_path, "list file not found")
    try:
        text = list_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ImageError(list_path, f"cannot read list file ({e})") from e
    base = list_path.parent
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        p = pathlib.Path(line).expanduser()
        out.append(p if p.is_absolute() else base / p)
    if not out:
        raise ImageError(
            list_path, "list file names no images (every line is blank or a '#' comment)"
        )
    return out


def _folder_images(folder: pathlib.Path) -> list[pathlib.Path]:
    found = sorted((q for q in folder.iterdir() if q.is_file() and _is_image_name(q)),
                   key=lambda q: q.name)
    if not found:
        raise ImageError(folder, "folder holds no PNG or JPEG images "
                                 "(looked for *.png, *.jpg, *.jpeg in any case, not in subfolders)")
    return found


def _glob_images(pattern: str) -> list[pathlib.Path]:
    found = sorted(
        (pathlib.Path(q) for q in glob.glob(os.path.expanduser(pattern), recursive=True)
         if os.path.isfile(q) and _is_image_name(pathlib.Path(q))),
        key=lambda q: (q.name, str(q)),
    )
    if not found:
        raise ImageError(None, f"glob pattern {pattern!r} matched no PNG or JPEG files "
                               "(*.png, *.jpg, *.jpeg in any case)")
    return found


def _discover_one(spec: PathLike) -> list[pathlib.Path]:
    s = os.fspath(spec)
    if s.startswith("@"):
        return _read_list_file(pathlib.Path(s[1:]).expanduser())
    p = pathlib.Path(s).expanduser()
    if p.is_dir():
        return _folder_images(p)
    if p.suffix.lower() == ".txt":
        return _read_list_file(p)
    if p.is_file():
        return [p]
    if glob.has_magic(s):
        return _glob_images(s)
    raise ImageError(p, "no such file, folder or list file")


def discover_inputs(spec: PathLike | Sequence[PathLike]) -> list[pathlib.Path]:
    """Lists the input images named by ``spec``.

    Args:
      spec: one of
        * a folder: its ``*.png``, ``*.jpg`` and ``*.jpeg`` files (any case, hidden files
          skipped, not recursive), sorted by file name;
        * a glob pattern such as ``"faces/*_0.png"`` (``**`` recurses): the matching files with
          those endings, sorted by file name;
        * a list file, written ``"@list.txt"`` or any path ending in ``.txt``: one path per line,
          relative paths taken from the list file's folder, blank lines and lines starting with
          ``#`` ignored, order kept, listed files not checked;
        * a path to one file: that file;
        * a sequence of the above: their results concatenated in order.
      A path that appears twice is kept once (the first time).

    Returns:
      The image paths, as ``pathlib.Path``.

    Raises:
      ImageError: when something names nothing (a missing path, an empty folder, a glob that
        matches nothing, a list file with no entries). The message says what was searched.
    """
    specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
    if not specs:
        raise ImageError(None, "no inputs given (an empty list of folders/files)")
    out: list[pathlib.Path] = []
    seen: set[str] = set()
    for s in specs:
        for p in _discover_one(s):
            key = os.path.normcase(os.path.abspath(p))
            if key not in seen:
                seen.add(key)
                out.append(p)
    return out


def valid_lr_sizes(resolution: int) -> list[int]:
    """The LR sizes ``S < resolution`` with ``resolution / S`` an integer, ascending.

    For 1024: ``[1, 2, 4, 8, 16, 32, 64, 128, 256, 512]``.
    """
    return [s for s in range(1, resolution) if resolution % s == 0]


def check_size(size: int, resolution: int) -> int:
    """Checks an LR size against the generator's resolution and returns the factor.

    PULSE's bicubic downscale needs an integer factor ``resolution / size``, and a factor of at
    least 2 (factor 1 is not the identity in the reference, docs/reference.md, "The downscale
    operator", and is not a super-resolution).

    Args:
      size: the LR image's side ``S`` in pixels.
      resolution: the generator's output side (1024 for the FFHQ model).

    Returns:
      ``resolution // size``.

    Raises:
      ImageError (path ``None``): when ``size`` does not divide ``resolution`` or is not smaller;
        the message lists the sizes that work.
    """
    if not isinstance(resolution, (int, np.integer)) or resolution < 2:
        raise ValueError(f"generator resolution must be an integer >= 2, got {resolution!r}")
    valid = ", ".join(map(str, valid_lr_sizes(int(resolution))))
    if size < 1:
        raise ImageError(None, f"LR size must be a positive number of pixels, got {size}; "
                               f"valid sizes are {valid}")
    if size >= resolution:
        raise ImageError(
            None,
            f"LR size {size}x{size} is not smaller than the generator's resolution "
            f"{resolution}x{resolution}; PULSE needs a low-resolution face whose size divides "
            f"{resolution}: valid sizes are {valid} (downscale a larger face first)",
        )
    if resolution % size:
        raise ImageError(
            None,
            f"LR size {size}x{size} does not divide the generator's resolution {resolution} "
            f"(factor {resolution / size:.4g} is not an integer, and PULSE's bicubic downscale "
            f"needs an integer factor); valid sizes are {valid}",
        )
    return int(resolution) // int(size)
