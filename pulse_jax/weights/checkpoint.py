"""Our own generator checkpoint: a folder with ``manifest.json`` and ``arrays.npz``.

``arrays.npz`` is a plain NumPy zip (read with ``allow_pickle=False``, so loading runs no
code) holding every parameter under its ``/``-joined params path, plus ``gaussian_fit/mean``
and ``gaussian_fit/std``. ``manifest.json`` records the format version, the generator
``family`` ("stylegan" or "stylegan2"; absent in checkpoints older than StyleGAN2 support,
which are StyleGAN v1) and its config, every array's shape and stored dtype, the SHA-256 of
``arrays.npz`` (checked on load) and the checksums of the files it was converted from.
The folder is written under a temporary name and renamed into place, so a crash never
leaves a half-written checkpoint. Saving over an existing folder replaces it only if it is
a pulse-jax checkpoint (:func:`check_replaceable`: our manifest and arrays and nothing
else, or an empty folder); any other folder or file is refused, never deleted.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Mapping, Optional, Sequence

from flax import traverse_util
import jax.numpy as jnp
import numpy as np

from pulse_jax import families, files, stylegan
from pulse_jax.generator import Generator

FORMAT = "pulse-jax-generator"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAYS = "arrays.npz"


class CheckpointError(ValueError):
    """A checkpoint folder that is missing, incomplete, corrupt or of another format, or a
    path that saving would have to delete although it is not a checkpoint."""


def check_replaceable(path: os.PathLike) -> None:
    """Raises CheckpointError unless saving a checkpoint at ``path`` loses nothing but a
    checkpoint: ``path`` is missing, an empty folder, or a folder holding only our
    ``manifest.json`` (format ``pulse-jax-generator``) and ``arrays.npz``.

    Anything else (a file, a project folder, a checkpoint with files of yours added) is
    left alone: the message names what is there and asks for another folder.
    """
    path = pathlib.Path(path).expanduser()
    if not path.exists() and not path.is_symlink():
        return
    refuse = (f"{path} exists and is not a pulse-jax checkpoint, so it is not replaced: save "
              "into a new or empty folder, or into one that holds only a checkpoint")
    if not path.is_dir():
        raise CheckpointError(f"{refuse} (it is a file)")
    entries = sorted(os.listdir(path))
    others = [e for e in entries if e not in (MANIFEST, ARRAYS)]
    if others:
        shown = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise CheckpointError(f"{refuse} (it holds {shown})")
    if not entries:
        return
    try:
        fmt = json.loads((path / MANIFEST).read_text()).get("format")
    except (OSError, ValueError, AttributeError):  # missing, unreadable, not JSON, not a dict
        fmt = None
    if fmt != FORMAT:
        raise CheckpointError(f"{refuse} (no {MANIFEST} of format {FORMAT!r})")


def _flatten(tree: Mapping) -> dict[str, Any]:
    """``{"a/b/c": leaf}``; absent sub-networks (``None``, e.g. no mapping) are left out."""
    return {k: v for k, v in traverse_util.flatten_dict(tree, sep="/").items() if v is not None}


def save_generator(generator: Generator, path: os.PathLike, *,
                   sources: Sequence[Mapping[str, Any]] = (), dtype: str = "float32",
                   extra: Optional[Mapping[str, Any]] = None, overwrite: bool = True) -> pathlib.Path:
    """Write ``generator`` to the checkpoint folder ``path``.

    Args:
      generator: what to save (params, gaussian fit and config).
      path: the checkpoint folder. If it exists and ``overwrite`` (the default), it is
        replaced atomically, but only if it is a pulse-jax checkpoint or empty
        (:func:`check_replaceable`); any other folder is refused, never deleted.
      sources: records of the files it came from, e.g. ``{"path": ..., "sha256": ...}``.
      dtype: storage dtype of the parameters, "float32" (exact) or "float16" (half the
        size; loading casts back to float32). The Gaussian fit is always float32.
      extra: more JSON-serializable fields for the manifest (e.g. a licence note).

    Raises:
      CheckpointError: ``path`` exists and is not a checkpoint (nothing is written).
      FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    path = pathlib.Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists")
    check_replaceable(path)
    flat = {f"params/{k}": np.asarray(v).astype(dtype) for k, v in _flatten(generator.params).items()}
    if generator.gaussian_fit is not None:
        flat.update({f"gaussian_fit/{k}": np.asarray(v, np.float32)
                     for k, v in generator.gaussian_fit.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        np.savez(tmp / ARRAYS, **flat)
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "family": generator.config.family,
            "config": generator.config.to_dict(),
            "has_mapping": generator.has_mapping,
            "has_gaussian_fit": generator.gaussian_fit is not None,
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in flat.items()},
            "arrays_sha256": files.sha256_file(tmp / ARRAYS),
            "sources": [dict(s) for s in sources],
            **(dict(extra) if extra else {}),
        }
        with open(tmp / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _swap_in(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def _swap_in(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Renames the finished folder ``tmp`` to ``path``, replacing the checkpoint there.

    The old checkpoint is parked under a fresh hidden name (never a fixed one, which could
    be a folder of the user's) and removed once the new one is in place; if the swap fails
    half-way, it is put back.
    """
    check_replaceable(path)  # again: the work before this may have taken minutes
    old = tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent)
    try:
        files.replace_dir(tmp, path, old)
    except BaseException:
        if not path.exists() and os.path.isdir(old) and os.listdir(old):
            os.replace(old, path)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(old)  # only ever empty here: replace_dir removed the old checkpoint
    files.fsync_dir(path.parent)


def read_manifest(path: os.PathLike) -> dict:
    """The manifest of checkpoint folder ``path`` (raises CheckpointError if unreadable)."""
    path = pathlib.Path(path).expanduser()
    mpath = path / MANIFEST
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a pulse-jax checkpoint folder (it does not exist or "
                              "is a file; convert weights with `pulse-jax convert`)")
    try:
        manifest = json.loads(mpath.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no {MANIFEST}: incomplete or not a pulse-jax checkpoint") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{mpath}: corrupt manifest ({e})") from None
    if manifest.get("format") != FORMAT:
        raise CheckpointError(f"{mpath}: format {manifest.get('format')!r} is not {FORMAT!r}")
    if manifest.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{mpath}: format version {manifest['format_version']} is newer than "
                              f"this pulse-jax reads ({FORMAT_VERSION}); upgrade pulse-jax")
    return manifest


# Manifest fields that describe the arrays; update_manifest never changes them.
_OWN_FIELDS = ("format", "format_version", "created", "family", "config", "has_mapping",
               "has_gaussian_fit", "arrays", "arrays_sha256", "sources")


def update_manifest(path: os.PathLike, extra: Mapping[str, Any]) -> dict:
    """Adds or replaces ``extra`` fields (e.g. a framing template) in the manifest of the
    checkpoint folder ``path``, atomically, leaving the arrays untouched; returns the new
    manifest. The fields that describe the arrays cannot be changed this way."""
    clash = sorted(set(extra) & set(_OWN_FIELDS))
    if clash:
        raise ValueError(f"update_manifest cannot change {clash}; save the generator instead")
    path = pathlib.Path(path).expanduser()
    manifest = {**read_manifest(path), **dict(extra)}
    files.atomic_write_text(path / MANIFEST, json.dumps(manifest, indent=1))
    return manifest


def load_generator(path: os.PathLike, verify: bool = True) -> Generator:
    """Load a :class:`Generator` written by :func:`save_generator`.

    Checks the arrays' checksum (``verify``), names and shapes against the manifest and
    the config; parameters come back as float32.
    """
    path = pathlib.Path(path).expanduser()
    manifest = read_manifest(path)
    apath = path / ARRAYS
    if not apath.is_file():
        raise CheckpointError(f"{path}: {ARRAYS} is missing")
    if verify and files.sha256_file(apath) != manifest.get("arrays_sha256"):
        raise CheckpointError(f"{apath}: checksum mismatch (the file is corrupt or was modified)")
    try:
        with np.load(apath, allow_pickle=False) as f:
            flat = {k: f[k] for k in f.files}
    except Exception as e:  # zipfile / format errors from a damaged file
        raise CheckpointError(f"{apath}: unreadable ({type(e).__name__}: {e})") from None
    expected = manifest["arrays"]
    if set(flat) != set(expected):
        raise CheckpointError(f"{apath}: arrays {sorted(set(flat) ^ set(expected))[:5]} "
                              "differ from the manifest")
    for k, v in flat.items():
        if list(v.shape) != expected[k]["shape"]:
            raise CheckpointError(f"{apath}: {k} has shape {v.shape}, manifest says {expected[k]['shape']}")
    try:
        config = families.config_from_dict(manifest.get("family", stylegan.FAMILY),
                                           manifest["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path / MANIFEST}: bad generator config ({e})") from None
    tree = traverse_util.unflatten_dict({k: v.astype(np.float32) for k, v in flat.items()},
                                        sep="/")
    params = tree.get("params", {})
    params.setdefault("mapping", None)
    fit = tree.get("gaussian_fit")
    fit = None if fit is None else {k: jnp.asarray(v) for k, v in fit.items()}
    gen = Generator(config=config, params=params, gaussian_fit=fit)
    _check_shapes(gen)
    return gen


def _check_shapes(gen: Generator) -> None:
    """The params must have exactly the names and shapes that the config implies."""
    shapes = families.module_for(gen.config).param_shapes(gen.config)
    expected = {k: v.shape for k, v in _flatten(shapes).items()
                if gen.has_mapping or not k.startswith("mapping/")}
    got = {k: v.shape for k, v in _flatten(gen.params).items()}
    if expected != got:
        diff = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        raise CheckpointError(
            "checkpoint parameters do not match its config: "
            + ", ".join(f"{k}: expected {expected.get(k)}, found {got.get(k)}" for k in diff[:5]))
