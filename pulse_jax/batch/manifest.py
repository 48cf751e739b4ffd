"""Where a batch's results are recorded, and how a record is known to be current.

``manifest.jsonl`` in the output folder holds one JSON line per face (fields: see
:mod:`pulse_jax.batch`). With ``n`` processes, process ``p`` appends to
``manifest.part{p}of{n}.jsonl`` instead and :func:`merge_manifests` folds the parts into
``manifest.jsonl`` at the end; :func:`read_records` reads both, so a stopped multi-process
run resumes without a merge.

A record is current when its ``config_hash`` (:func:`config_hash`) matches: the first 16
hex digits of the SHA-256 of the canonical JSON (sorted keys) of
``{"generator": generator_fingerprint(generator), "search": the SearchConfig fields except
chunk_steps, keep_restart_images and remat (which do not change what is computed), with
"auto" loop and upconv resolved for JAX's default backend (they change the bits), and
the epilogue as it acts on this generator (left out where that is autodiff, as every run
before it had), "seed": seed, "version": 2}``, plus ``"degradation"`` (the operator's description and a
SHA-256 of its arrays, :func:`degradation_fingerprint`) when ``--config.degradation`` is
given; per-face masks are checked by their own ``mask_sha256``.
:func:`generator_fingerprint` is the SHA-256 of the generator config and every parameter
and Gaussian-fit array (name, dtype, shape, bytes) in sorted order, so it identifies the
weights themselves, whichever file they came from.
``batch_size`` and the device layout are not hashed (they change float rounding only).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import re
from typing import Any

import jax
import numpy as np

from pulse_jax import degrade, files
from pulse_jax import search as search_lib
from pulse_jax.search import config as search_config
from pulse_jax.generator import Generator

__all__ = ["MANIFEST", "config_hash", "degradation_fingerprint", "generator_fingerprint",
           "merge_manifests", "part_files", "part_name", "read_records"]

MANIFEST = "manifest.jsonl"
HASH_VERSION = 2  # 2: loop and upconv (resolved) are hashed
# SearchConfig fields that do not change what is computed (only how, or what is returned).
_HASH_EXCLUDED = ("chunk_steps", "keep_restart_images", "remat")
_PART_RE = re.compile(r"^manifest\.part(\d+)of(\d+)\.jsonl$")


def generator_fingerprint(generator: Generator) -> str:
    """SHA-256 (hex) of the generator's config and all its arrays (see the module doc)."""
    h = hashlib.sha256()
    h.update(json.dumps(generator.config.to_dict(), sort_keys=True).encode())
    leaves = jax.tree_util.tree_flatten_with_path(
        {"params": generator.params, "gaussian_fit": generator.gaussian_fit})[0]
    for path, leaf in sorted(((jax.tree_util.keystr(p), v) for p, v in leaves),
                             key=lambda kv: kv[0]):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{path}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def hashed_search_fields(config: search_lib.SearchConfig, generator_config: Any = None) -> dict:
    """The resolved SearchConfig fields a result depends on; with ``generator_config``, the
    epilogue as it acts on that generator (:func:`pulse_jax.search.config.effective_epilogue`)."""
    d = dataclasses.asdict(config.resolved())
    for k in _HASH_EXCLUDED:
        d.pop(k, None)
    if d.get("sphere_radius") == "initial":  # the default: hashes from before it stay valid
        d.pop("sphere_radius")
    if generator_config is not None:
        d["epilogue"] = search_config.effective_epilogue(d["epilogue"], generator_config)
    if d.get("epilogue") == "autodiff":  # what every run before the option computed
        d.pop("epilogue")
    return d


def config_hash(generator: Generator | str, config: search_lib.SearchConfig, seed: int,
                degradation: str = "", generator_config: Any = None) -> str:
    """16 hex digits identifying what a face's result depends on (see the module doc).

    ``generator`` is a :class:`Generator` or its :func:`generator_fingerprint` (then give
    its ``generator_config`` too, or the epilogue is hashed as resolved, not as it acts);
    ``degradation`` identifies a given forward model (:func:`degradation_fingerprint`; ""
    when none is given: the reference's bicubic downscale, which leaves the hash as it was).
    """
    fp = generator if isinstance(generator, str) else generator_fingerprint(generator)
    gen_config = generator_config if isinstance(generator, str) else generator.config
    fields = {"version": HASH_VERSION, "generator": fp,
              "search": hashed_search_fields(config, gen_config), "seed": int(seed)}
    if degradation:
        fields["degradation"] = degradation
    blob = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def degradation_fingerprint(op: degrade.Operator) -> str:
    """The operator's description and the SHA-256 of its arrays (a PSF's, a mask file's)."""
    leaves = [np.ascontiguousarray(np.asarray(x, np.float32))
              for x in jax.tree_util.tree_leaves(op)]
    return op.describe() + "|" + hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()


def part_name(process_index: int, process_count: int) -> str:
    return f"manifest.part{process_index}of{process_count}.jsonl"


def part_files(output_dir: pathlib.Path) -> list[pathlib.Path]:
    if not output_dir.is_dir():
        return []
    return sorted((p for p in output_dir.iterdir() if _PART_RE.match(p.name)),
                  key=lambda p: tuple(int(x) for x in _PART_RE.match(p.name).groups())[::-1])


def read_records(output_dir: os.PathLike) -> list[dict]:
    """All complete records of ``manifest.jsonl`` and of any unmerged part files."""
    output_dir = pathlib.Path(output_dir)
    out = files.read_jsonl(output_dir / MANIFEST)
    for p in part_files(output_dir):
        out.extend(files.read_jsonl(p))
    return out


def record_key(r: dict) -> str:
    return json.dumps(r, sort_keys=True, separators=(",", ":"))


def merge_manifests(output_dir: os.PathLike, *, remove_parts: bool = True) -> pathlib.Path:
    """Merge ``manifest.part*.jsonl`` into ``manifest.jsonl``; idempotent.

    Records not yet in ``manifest.jsonl`` are appended (sorted by face id, then name), the
    file is replaced atomically, then the merged parts (and their ``.done`` markers) are
    deleted. A record that is already present (e.g. a crash after the write but before the
    deletion) is not added again, so merging twice gives the same file.
    """
    output_dir = pathlib.Path(output_dir)
    target = output_dir / MANIFEST
    parts = part_files(output_dir)
    if not parts:
        return target
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raw = b""
    raw = raw[: raw.rfind(b"\n") + 1]  # drop a partial last line (a crashed append)
    seen = {record_key(r) for r in files.read_jsonl(target)}
    new = []
    for p in parts:
        for r in files.read_jsonl(p):
            k = record_key(r)
            if k not in seen:
                seen.add(k)
                new.append(r)
    new.sort(key=lambda r: (r.get("face_id", math.inf), str(r.get("name", ""))))
    if new:
        text = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":"),
                                  allow_nan=False) + "\n" for r in new)
        files.atomic_write_bytes(target, raw + text.encode("utf-8"))
    if remove_parts:
        for p in parts:
            for q in (p, p.with_suffix(".done")):
                try:
                    q.unlink()
                except FileNotFoundError:
                    pass
    return target
