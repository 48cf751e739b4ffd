"""Training images: a folder or a zip decoded once into a uint8 array, and a resumable stream.

``load_images(path, resolution)`` decodes every image (PNG/JPEG/BMP/WebP, sorted by name;
in a zip, every member with an image extension) with Pillow into one ``uint8 [N, R, R, 3]``
array in memory (23k faces at 64 x 64 are 285 MB). Grayscale, palette and alpha images are
converted to RGB; an image that is not ``R x R`` is centre-cropped to a square and resized
with Lanczos. Files that fail to decode are skipped and listed in ``Dataset.skipped``.

``BatchStream`` hands out batches in a deterministic order: the stream is the concatenation
of epochs, each a permutation of the dataset drawn from ``(seed, epoch)``; with ``flip`` each
(epoch, image) also gets a horizontal flip from the same generator. Its whole state is one
integer, ``position`` (images handed out so far), which a checkpoint stores; a stream made
with the same dataset, seed and batch size at that position continues exactly. A batch that
crosses an epoch boundary takes the end of one epoch and the start of the next.
"""

from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import zipfile
from typing import Iterator, Optional

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


@dataclasses.dataclass
class Dataset:
    """Decoded images: ``images`` uint8 ``[N, R, R, 3]``; ``names`` the N source names."""

    images: np.ndarray
    names: list[str]
    source: str
    skipped: list[str] = dataclasses.field(default_factory=list)
    resized: int = 0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return (name.lower().endswith(IMAGE_EXTENSIONS) and not base.startswith(".")
            and "__MACOSX/" not in name)


def _decode(data: bytes, resolution: Optional[int]) -> tuple[np.ndarray, bool]:
    """uint8 ``[R, R, 3]`` and whether it had to be cropped/resized."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        if im.mode != "RGB":
            im = im.convert("RGB")
        w, h = im.size
        changed = False
        if w != h:
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            im = im.crop((left, top, left + s, top + s))
            changed = True
        if resolution is not None and im.size[0] != resolution:
            im = im.resize((resolution, resolution), Image.Resampling.LANCZOS)
            changed = True
        return np.asarray(im, np.uint8), changed


def _sources(path: pathlib.Path) -> Iterator[tuple[str, bytes]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file()
                       and _is_image(p.relative_to(path).as_posix()))
        for p in files:
            yield p.relative_to(path).as_posix(), p.read_bytes()
    elif zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            names = sorted(i.filename for i in zf.infolist()
                           if not i.is_dir() and _is_image(i.filename))
            for n in names:
                yield n, zf.read(n)
    elif path.exists():
        raise ValueError(f"{path}: not a folder or a zip file of images")
    else:
        raise FileNotFoundError(f"{path}: no such folder or zip file")


def load_images(path: os.PathLike, resolution: Optional[int] = None,
                max_images: Optional[int] = None) -> Dataset:
    """Decode all images under ``path`` (a folder, searched recursively, or a zip).

    Args:
      path: folder or ``.zip``.
      resolution: side R of the output; None = the first image's (then every image of
        another size is resized to it).
      max_images: keep only the first this many (by sorted name); None or 0 = all.

    Returns:
      A :class:`Dataset`. Raises ValueError if no image could be decoded.
    """
    path = pathlib.Path(path).expanduser()
    images, names, skipped, resized = [], [], [], 0
    for name, data in _sources(path):
        if max_images and len(images) >= max_images:
            break
        try:
            x, changed = _decode(data, resolution)
        except Exception:  # noqa: BLE001  (any decoder error: skip the file, report it)
            skipped.append(name)
            continue
        if resolution is None:
            resolution = x.shape[0]
        resized += changed
        images.append(x)
        names.append(name)
    if not images:
        raise ValueError(f"{path}: no decodable images (extensions {IMAGE_EXTENSIONS})"
                         + (f"; {len(skipped)} failed to decode" if skipped else ""))
    return Dataset(np.stack(images), names, str(path), skipped, resized)


class BatchStream:
    """An endless, deterministic, resumable stream of uint8 batches ``[B, R, R, 3]``.

    Args:
      images: uint8 ``[N, R, R, 3]`` (or a :class:`Dataset`).
      batch_size: B.
      seed: the shuffling (and flipping) seed.
      flip: mirror each (epoch, image) left-right with probability 1/2.
      shuffle: False keeps the dataset order in every epoch (for tests).
      position: images handed out so far (from a checkpoint).
    """

    def __init__(self, images, batch_size: int, seed: int = 0, flip: bool = False,
                 shuffle: bool = True, position: int = 0):
        self.images = images.images if isinstance(images, Dataset) else np.asarray(images)
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, H, W, C], got {self.images.dtype} "
                             f"{self.images.shape}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.flip = bool(flip)
        self.shuffle = bool(shuffle)
        self.position = int(position)
        self._epoch_cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def epoch_order(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """``(permutation [N], flip mask [N])`` of ``epoch``."""
        if self._epoch_cache is not None and self._epoch_cache[0] == epoch:
            return self._epoch_cache[1], self._epoch_cache[2]
        n = len(self)
        rng = np.random.default_rng([self.seed, epoch])
        perm = rng.permutation(n) if self.shuffle else np.arange(n)
        flips = rng.random(n) < 0.5 if self.flip else np.zeros(n, bool)
        self._epoch_cache = (epoch, perm, flips)
        return perm, flips

    def batch_at(self, position: int) -> np.ndarray:
        """The batch starting at stream position ``position`` (does not move the stream)."""
        n = len(self)
        idx, flp = [], []
        pos, left = position, self.batch_size
        while left:
            epoch, off = divmod(pos, n)
            perm, flips = self.epoch_order(epoch)
            take = min(left, n - off)
            idx.append(perm[off:off + take])
            flp.append(flips[off:off + take])
            pos += take
            left -= take
        idx, flp = np.concatenate(idx), np.concatenate(flp)
        batch = self.images[idx]
        if flp.any():
            batch[flp] = batch[flp, :, ::-1]
        return batch

    def __iter__(self) -> "BatchStream":
        return self

    def __next__(self) -> np.ndarray:
        batch = self.batch_at(self.position)
        self.position += self.batch_size
        return batch

    @property
    def epoch(self) -> float:
        return self.position / len(self)
