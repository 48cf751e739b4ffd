"""Many faces: the PULSE pipeline from image files to HR images and a manifest.

:func:`run_batch` is the library form of the ``pulse-jax upsample`` command (no flags are
parsed here)::

    from pulse_jax import batch, load_generator, search
    gen = load_generator("~/.cache/pulse_jax/checkpoints/ffhq1024")
    summary = batch.run_batch(gen, "input/", "runs/", search.SearchConfig(steps=100), seed=0)
    print(summary.format())

Stages, for every process:

1. **Plan.** ``discover_inputs`` lists the files (folders and globs sorted by name, list files
   in their order). With ``duplicates = d`` every file gives ``d`` faces. The *face id* of
   duplicate ``k`` of file ``i`` is ``i * d + k``: a face's random starts come from
   ``(seed, face id, restart)`` only, so they are the same however the list is split over
   devices and processes. Process ``p`` of ``n`` takes the faces with ``face_id % n == p``.
2. **Names.** A face is written as ``{name}.png`` where ``name`` is the file's stem, as in the
   reference, or ``{stem}_{k+1}`` for duplicates (``d > 1``). Names are unique
   case-insensitively *with* their derived files (``{name}_lr.png``, ``{name}_sheet.png``): a
   later face whose name would clash (``a/face.png`` and ``b/face.png``, or ``face.png`` and
   ``face.jpg``) becomes ``{name}-2``, ``{name}-3``, ... in input-list order, so naming is
   deterministic and does not depend on the output options.
3. **Resume.** Records already in ``manifest.jsonl`` (and in unmerged ``manifest.part*.jsonl``)
   are read. A face is skipped when a record has the same ``name``, the same ``config_hash``
   and the same ``input_sha256`` (so an edited input is redone), and its HR file (if one was
   written) exists. An input that was recorded as bad is not retried until its bytes change.
   Output options (``save_lr``, contact sheets, intermediates) are not part of the hash:
   turning one on for a finished batch does not redo it.
4. **Search.** Good faces are loaded (``images.load_image``, which validates them) and
   grouped by LR size; each call to :func:`pulse_jax.search.upsample` takes
   ``batch_size * devices`` faces, sharded over the local devices (mesh axis ``"faces"``),
   the last call padded. ``batch_size`` is the number of faces *per device* and is a setting,
   never derived from the device count: with the same ``batch_size`` a face gets the same
   bits on 1 or 4 devices and on 1 or 2 processes (README.md, "Reproducibility").
5. **Write.** For each face, in this order: ``{name}.png`` (HR), optionally ``{name}_lr.png``
   (the HR's bicubic downscale) and ``{name}_sheet.png`` (``LR | best | every restart``,
   labelled with l2), then one manifest line. Every image is written atomically (temporary
   file, then rename) and the manifest line last, in one ``write``, so a killed run loses at
   most the faces in flight and leaves no partial file. With ``save_intermediate``, frames of
   the best image so far go to ``{name}/HR/{name}_{step}.png`` and ``{name}/LR/...`` after
   every ``config.chunk_steps`` steps (``chunk_steps=1`` gives every step, as the reference),
   plus the final result as frame ``steps``.
6. **Merge.** With one process the lines go straight to ``manifest.jsonl``. With ``n``
   processes, process ``p`` appends to ``manifest.part{p}of{n}.jsonl``; at the end every
   process passes a barrier (the ``jax.distributed`` coordinator, or ``.done`` marker files
   when no coordinator is running) and process 0 merges the parts into ``manifest.jsonl``
   (:func:`merge_manifests`: records already present are not added twice, merged parts are
   deleted; running it again changes nothing). The output folder must be shared by the
   processes.

Manifest records (one JSON line per face)::

    {"input": "input/a.png", "name": "a", "face_id": 0, "output": "runs/a.png",
     "l2": 0.0017, "success": true, "eps": 0.002, "seed": 0, "restart": 1,
     "restart_l2": [0.0031, 0.0017], "steps": 100, "restarts": 2, "wall_s": 5.2,
     "config_hash": "3c1f...", "input_sha256": "...", "lr_size": 32, "factor": 32, ...}

``l2`` is the mean squared error, in [0, 1] units, of the saved HR's bicubic downscale against
the input; ``success`` is ``l2 <= eps``. ``wall_s`` is the wall time of the search call that
produced the face (faces searched together share it). Unlike the reference, which writes an
image only on success, the HR is written for every face (``write_failures=False`` restores the
reference: no file, ``"output": null``). A bad input gets ``{"input", "name", "face_id",
"error", "error_kind": "input", "config_hash", "input_sha256"}``; a search that raised gets
``"error_kind": "search"`` and is retried by the next run.

Config hash (:func:`config_hash`): the first 16 hex digits of the SHA-256 of the canonical JSON
(sorted keys) of ``{"generator": generator_fingerprint(generator), "search": the SearchConfig
fields except chunk_steps, keep_restart_images and remat (which do not change what is
computed), with "auto" loop and upconv resolved for JAX's default backend (they change the
bits), "seed": seed, "version": 2}``. ``generator_fingerprint`` is the SHA-256 of the
generator config and every parameter and Gaussian-fit array (name, dtype, shape, bytes) in
sorted order, so it identifies the weights themselves, whichever file they were loaded from.
``batch_size`` and the device layout are not in the hash (they change float rounding only).

Exit status of a batch (:func:`exit_status`): 0 when every face has a result within eps; 1
when any input was bad or any search failed; 3 when every input was processed but some face
missed eps. (Status 2, usage/configuration/weights errors, belongs to the command line.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import re
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np

from pulse_jax import devices as devices_lib
from pulse_jax import exit_codes, files, images, pictures
from pulse_jax import search as search_lib
from pulse_jax.generator import Generator

__all__ = [
    "Face", "Summary", "config_hash", "exit_status", "generator_fingerprint", "merge_manifests",
    "plan_faces", "read_records", "run_batch",
]

MANIFEST = "manifest.jsonl"
HASH_VERSION = 2  # 2: loop and upconv (resolved) are hashed
# SearchConfig fields that do not change what is computed (only how, or what is returned).
_HASH_EXCLUDED = ("chunk_steps", "keep_restart_images", "remat")
_PART_RE = re.compile(r"^manifest\.part(\d+)of(\d+)\.jsonl$")

_logger = logging.getLogger(__name__)


def _default_log(msg: str) -> None:
    _logger.info(msg)


# --------------------------------------------------------------------------------------------
# Planning: faces, names, hashes
# --------------------------------------------------------------------------------------------


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
    if int(duplicates) < 1:
        raise ValueError(f"duplicates must be >= 1, got {duplicates!r}")
    d = int(duplicates)
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


def _search_fields(config: search_lib.SearchConfig) -> dict:
    d = dataclasses.asdict(config.resolved())
    for k in _HASH_EXCLUDED:
        d.pop(k, None)
    return d


def config_hash(generator: Generator | str, config: search_lib.SearchConfig, seed: int) -> str:
    """16 hex digits identifying what a face's result depends on (see the module doc).

    ``generator`` is a :class:`Generator` or its :func:`generator_fingerprint`.
    """
    fp = generator if isinstance(generator, str) else generator_fingerprint(generator)
    blob = json.dumps({"version": HASH_VERSION, "generator": fp,
                       "search": _search_fields(config), "seed": int(seed)},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _sha256_file(path: pathlib.Path) -> Optional[str]:
    try:
        return files.sha256_file(path)
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------


def part_name(process_index: int, process_count: int) -> str:
    return f"manifest.part{process_index}of{process_count}.jsonl"


def _part_files(output_dir: pathlib.Path) -> list[pathlib.Path]:
    if not output_dir.is_dir():
        return []
    return sorted((p for p in output_dir.iterdir() if _PART_RE.match(p.name)),
                  key=lambda p: tuple(int(x) for x in _PART_RE.match(p.name).groups())[::-1])


def read_records(output_dir: os.PathLike) -> list[dict]:
    """All complete records of ``manifest.jsonl`` and of any unmerged part files."""
    output_dir = pathlib.Path(output_dir)
    out = files.read_jsonl(output_dir / MANIFEST)
    for p in _part_files(output_dir):
        out.extend(files.read_jsonl(p))
    return out


def _record_key(r: dict) -> str:
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
    parts = _part_files(output_dir)
    if not parts:
        return target
    try:
        raw = target.read_bytes()
    except FileNotFoundError:
        raw = b""
    raw = raw[: raw.rfind(b"\n") + 1]  # drop a partial last line (a crashed append)
    seen = {_record_key(r) for r in files.read_jsonl(target)}
    new = []
    for p in parts:
        for r in files.read_jsonl(p):
            k = _record_key(r)
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


# --------------------------------------------------------------------------------------------
# Summary and exit status
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Summary:
    """Counts for one process's share of faces (or, on process 0 after a merge, ``merged``
    holds the same counts over all processes' faces)."""

    faces: int = 0          # faces in this share
    done: int = 0           # searched in this run
    skipped: int = 0        # already complete (same config hash) from an earlier run
    succeeded: int = 0      # l2 <= eps (this run and skipped)
    failed: int = 0         # a result, but l2 > eps
    bad: int = 0            # bad input files or searches that raised
    mean_l2: Optional[float] = None   # over faces with a result
    wall_s: float = 0.0
    search_s: float = 0.0
    face_steps: int = 0     # sum over searched faces of steps (restarts run in parallel)
    config_hash: str = ""
    output_dir: str = ""
    process_index: int = 0
    process_count: int = 1
    errors: list = dataclasses.field(default_factory=list)   # [(input, message)]
    merged: Optional["Summary"] = None

    @property
    def faces_per_s(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def steps_per_s(self) -> float:
        """Search steps per second, counting one step of one face as one."""
        return self.face_steps / self.wall_s if self.wall_s > 0 else 0.0

    def format(self) -> str:
        s = self.merged or self
        scope = ("" if self.process_count == 1 else
                 " (all processes)" if self.merged else
                 f" (process {self.process_index} of {self.process_count})")
        l2 = "n/a" if s.mean_l2 is None else f"{s.mean_l2:.5f}"
        lines = [
            f"PULSE batch{scope}: {s.faces} faces: {s.done} done, {s.skipped} skipped "
            f"(already complete), {s.succeeded} succeeded (l2 <= eps), {s.failed} missed eps, "
            f"{s.bad} bad",
            f"  mean l2 {l2}; {self.done} faces in {self.wall_s:.1f} s "
            f"({self.faces_per_s:.3g} faces/s, {self.steps_per_s:.3g} face-steps/s); "
            f"config hash {self.config_hash}; output {self.output_dir}",
        ]
        return "\n".join(lines)


def exit_status(summary: Summary) -> int:
    """0: every face within eps; 1: a bad input or failed search; 3: some face missed eps."""
    s = summary.merged or summary
    if s.bad:
        return exit_codes.BAD_INPUT
    if s.failed:
        return exit_codes.MISSED_EPS
    return exit_codes.OK


def _count(records: dict[str, dict], summary: Summary) -> None:
    l2s = []
    for r in records.values():
        if "error" in r:
            summary.bad += 1
        elif r.get("success"):
            summary.succeeded += 1
        else:
            summary.failed += 1
        if r.get("l2") is not None:
            l2s.append(float(r["l2"]))
    summary.mean_l2 = float(np.mean(l2s)) if l2s else None


# --------------------------------------------------------------------------------------------
# Devices and processes
# --------------------------------------------------------------------------------------------


def faces_mesh(devices: Any = None) -> Optional[jax.sharding.Mesh]:
    """A 1-D mesh (axis ``"faces"``) over local devices, or None for a single device.

    ``devices``: None or 0 = all local devices; an int n = the first n local devices; a
    sequence of devices; or a ``Mesh`` (returned as is, if it has more than one device).
    """
    if isinstance(devices, jax.sharding.Mesh):
        return devices if devices.size > 1 else None
    devs = devices_lib.local_devices(devices)
    return devices_lib.make_mesh(devs, axis="faces") if len(devs) > 1 else None


def _marker(output_dir: pathlib.Path, process_index: int, process_count: int) -> pathlib.Path:
    return output_dir / (part_name(process_index, process_count)[:-len(".jsonl")] + ".done")


def _barrier(name: str, output_dir: pathlib.Path, process_index: int, process_count: int,
             timeout_s: float, log, payload: dict) -> bool:
    """Wait for all processes; returns True when all arrived within the timeout.

    Each process first writes its ``.done`` marker (holding ``payload``); then all wait at
    the ``jax.distributed`` coordinator's barrier, or, without a coordinator, process 0 polls
    for every process's marker with this run's config hash (each process deletes its own
    stale marker when it starts).
    """
    files.atomic_write_text(_marker(output_dir, process_index, process_count),
                             json.dumps(payload))
    client = None
    try:
        from jax._src import distributed as _dist
        client = _dist.global_state.client
    except Exception:  # pragma: no cover - private API moved
        client = None
    if client is not None and jax.process_count() == process_count:
        try:
            client.wait_at_barrier(name, int(timeout_s * 1000))
            return True
        except Exception as e:  # timeout or a dead peer: fall back to what is on disk
            log(f"warning: barrier {name!r} failed ({e}); merging what is on disk")
            return False
    if process_index != 0:
        return True
    deadline = time.time() + timeout_s
    others = [_marker(output_dir, k, process_count) for k in range(process_count)]
    def ready_one(m: pathlib.Path) -> bool:
        try:
            return json.loads(m.read_text()).get("config_hash") == payload.get("config_hash")
        except (OSError, ValueError):
            return False

    while True:
        ready = [ready_one(m) for m in others]
        if all(ready):
            return True
        if time.time() > deadline:
            log(f"warning: processes {[k for k, r in enumerate(ready) if not r]} did not "
                f"finish within {timeout_s:.0f} s; merging what is on disk")
            return False
        time.sleep(1.0)


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


class _Bar:
    """A tqdm bar over faces, advanced fractionally as search steps complete."""

    def __init__(self, total: int, enabled: bool, desc: str):
        self.bar = None
        if enabled and total:
            from tqdm import tqdm
            self.bar = tqdm(total=total, unit="face", desc=desc, file=sys.stderr,
                            dynamic_ncols=True, smoothing=0.1,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total} faces "
                                       "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
        self.base = 0.0       # whole faces finished
        self.shown = 0.0
        self.t_last = None

    def _to(self, value: float) -> None:
        if self.bar is not None and value > self.shown:
            self.bar.update(value - self.shown)
            self.shown = value

    def chunk_started(self) -> None:
        self.t_last = (time.perf_counter(), 0)

    def step(self, p: search_lib.Progress, n_faces: int) -> None:
        if self.bar is None:
            return
        now = time.perf_counter()
        t0, s0 = self.t_last or (now, 0)
        rate = (p.step - s0) / (now - t0) if now > t0 else 0.0
        self.t_last = (now, p.step)
        self._to(self.base + n_faces * p.step / max(p.steps, 1) * 0.999)
        best = float(np.nanmin(p.best_l2)) if np.size(p.best_l2) else float("nan")
        self.bar.set_postfix_str(f"step {p.step}/{p.steps}, {rate:.3g} it/s, best l2 {best:.4g}",
                                 refresh=False)

    def faces_done(self, n: int) -> None:
        self.base += n
        self._to(self.base)

    def log(self, log: Callable[[str], None], msg: str) -> None:
        """``log(msg)``, clearing the bar around it so the two do not mix."""
        if self.bar is None:
            log(msg)
            return
        with self.bar.external_write_mode(file=sys.stderr):
            log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------


def _clean_tmp(output_dir: pathlib.Path, targets: set[str]) -> None:
    """Remove temporary files of our atomic writes (``.{target}.{random}.tmp``) left by a kill."""
    if not output_dir.is_dir():
        return
    for p in output_dir.iterdir():
        n = p.name
        if n.startswith(".") and n.endswith(".tmp") and p.is_file():
            target = n[1:-len(".tmp")].rsplit(".", 1)[0]
            if target in targets:
                try:
                    p.unlink()
                except FileNotFoundError:
                    pass


def _complete(r: dict, h: str, sha: Optional[str], output_dir: pathlib.Path) -> bool:
    if r.get("config_hash") != h or r.get("input_sha256") != sha:
        return False
    if "error" in r:
        return r.get("error_kind") == "input"
    out = r.get("output")
    return out is None or (output_dir / pathlib.Path(out).name).is_file()


def run_batch(
    generator: Generator,
    inputs: Any,
    output_dir: os.PathLike,
    search_config: search_lib.SearchConfig = search_lib.SearchConfig(),
    *,
    seed: int = 0,
    batch_size: int = 1,
    devices: Any = None,
    duplicates: int = 1,
    save_lr: bool = False,
    save_contact_sheet: bool = False,
    save_intermediate: bool = False,
    write_failures: bool = True,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
    merge_timeout_s: float = 7 * 24 * 3600.0,
    progress: bool = True,
    log: Optional[Callable[[str], None]] = None,
) -> Summary:
    """Upsample every face named by ``inputs`` into ``output_dir`` (see the module doc).

    Args:
      generator: the :class:`Generator` (with a Gaussian fit).
      inputs: what :func:`pulse_jax.images.discover_inputs` accepts (a folder, glob, list
        file, file, or a sequence of them), or a list of paths.
      output_dir: created if missing.
      search_config: the :class:`pulse_jax.search.SearchConfig`.
      seed: base of every random start (an int; 0 is a seed like any other).
      batch_size: faces per device per search call (the per-device batch shape).
      devices: the local devices to shard faces over: None/0 = all, an int n = the first n,
        a sequence of devices, or a ``jax.sharding.Mesh`` with axis ``"faces"``.
      duplicates: independent results per input, ``{stem}_{k}.png`` with distinct face ids.
      save_lr: also write ``{name}_lr.png``, the HR's downscale.
      save_contact_sheet: also write ``{name}_sheet.png`` (LR | best | every restart).
      save_intermediate: write trajectory frames under ``{name}/HR`` and ``{name}/LR``.
      write_failures: write the HR of faces that missed eps (the reference does not).
      process_index, process_count: this process's share (default: ``jax.process_index()``
        and ``jax.process_count()``).
      merge_timeout_s: how long process 0 waits for the others before merging.
      progress: show a tqdm progress bar (on stderr).
      log: called with each message (bad inputs, warnings); default ``logging.info``.

    Returns:
      The :class:`Summary` (use :func:`exit_status` for a process exit code).

    Raises:
      pulse_jax.images.ImageError: ``inputs`` names nothing (an empty folder, a missing path).
      ValueError: invalid arguments.
    """
    t_start = time.time()
    log = log or _default_log
    output_dir = pathlib.Path(output_dir)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    pi = jax.process_index() if process_index is None else int(process_index)
    pc = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= pi < pc:
        raise ValueError(f"process_index {pi} is not in [0, {pc})")
    if generator.gaussian_fit is None:
        raise ValueError("the generator has no Gaussian fit (convert it with one)")
    mesh = faces_mesh(devices)
    n_dev = 1 if mesh is None else mesh.size
    cfg = search_config
    if save_contact_sheet and not cfg.keep_restart_images:
        cfg = dataclasses.replace(cfg, keep_restart_images=True)

    paths = (list(inputs) if isinstance(inputs, (list, tuple)) and inputs
             and all(isinstance(p, os.PathLike) for p in inputs)
             else images.discover_inputs(inputs))
    all_faces = plan_faces(paths, duplicates)
    mine = [f for f in all_faces if f.face_id % pc == pi]
    h = config_hash(generator, cfg, seed)
    summary = Summary(faces=len(mine), config_hash=h, output_dir=str(output_dir),
                      process_index=pi, process_count=pc)
    output_dir.mkdir(parents=True, exist_ok=True)
    manifest = output_dir / (MANIFEST if pc == 1 else part_name(pi, pc))
    if pc > 1:
        try:
            _marker(output_dir, pi, pc).unlink()  # a stale marker of an earlier run
        except FileNotFoundError:
            pass

    # --- resume -------------------------------------------------------------------------
    by_name: dict[str, list[dict]] = {}
    for r in read_records(output_dir):
        by_name.setdefault(r.get("name"), []).append(r)
    shas = {}
    finished: dict[str, dict] = {}   # name -> record (this run's and earlier)
    todo = []
    for f in mine:
        sha = shas.setdefault(f.input, _sha256_file(f.input))
        prev = [r for r in by_name.get(f.name, []) if _complete(r, h, sha, output_dir)]
        if prev:
            finished[f.name] = prev[-1]
            summary.skipped += 1
            if "error" in prev[-1]:
                summary.errors.append((str(f.input), prev[-1]["error"]))
        else:
            todo.append(f)
    _clean_tmp(output_dir, {v for f in todo for v in f.files().values()})
    if summary.skipped:
        log(f"resuming: {summary.skipped} of {len(mine)} faces already complete "
            f"(config hash {h}); {len(todo)} to do")

    bar = _Bar(len(todo), progress, "PULSE")

    def say(msg: str) -> None:
        bar.log(log, msg)

    def record(f: Face, rec: dict) -> None:
        rec = {"input": str(f.input), "name": f.name, "face_id": f.face_id, **rec,
               "config_hash": h, "input_sha256": shas.get(f.input),
               "process": pi, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        files.append_jsonl(manifest, rec)
        finished[f.name] = rec

    def bad(f: Face, message: str, kind: str) -> None:
        say(f"error: {message}")
        summary.errors.append((str(f.input), message))
        record(f, {"error": message, "error_kind": kind})

    # --- search, grouped by LR size, chunks of batch_size * devices faces ----------------
    chunk = batch_size * n_dev
    pending: dict[int, list[tuple[Face, np.ndarray, list[str]]]] = {}
    R = generator.resolution

    def run_chunk(group: list[tuple[Face, np.ndarray, list[str]]]) -> None:
        faces = [g[0] for g in group]
        lr = np.stack([g[1] for g in group])
        factor = R // lr.shape[1]
        frame_w = max(2, len(str(cfg.steps)))
        bar.chunk_started()

        def on_progress(p: search_lib.Progress) -> None:
            bar.step(p, len(faces))
            if save_intermediate:
                _save_frames(output_dir, faces, p.render(), factor, p.step - 1, frame_w)

        t0 = time.perf_counter()
        try:
            res = search_lib.upsample(generator, lr, cfg, seed,
                                      face_ids=[f.face_id for f in faces],
                                      batch_size=batch_size, mesh=mesh, progress=on_progress)
        except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
            say(traceback.format_exc())
            for f in faces:
                bad(f, f"{f.input}: search failed: {type(e).__name__}: {e}", "search")
            bar.faces_done(len(faces))
            return
        wall = time.perf_counter() - t0
        summary.search_s += wall
        summary.face_steps += len(faces) * cfg.steps
        for i, f in enumerate(faces):
            l2 = float(res.l2[i])
            ok = bool(res.success[i])
            files = f.files()
            out = None
            if ok or write_failures:
                images.save_png(output_dir / files["hr"], res.hr[i])
                out = str(output_dir / files["hr"])
            rec = {"output": out, "l2": l2 if math.isfinite(l2) else None, "success": ok,
                   "eps": cfg.eps, "seed": int(seed), "restart": int(res.restart[i]),
                   "restart_l2": [float(x) if math.isfinite(x) else None
                                  for x in np.asarray(res.restart_l2[i], np.float64)],
                   "steps": cfg.steps, "restarts": cfg.restarts, "wall_s": round(wall, 4),
                   "lr_size": int(lr.shape[1]), "factor": factor}
            if save_lr:
                images.save_png(output_dir / files["lr"], res.lr[i])
                rec["lr_output"] = str(output_dir / files["lr"])
            if save_contact_sheet:
                sheet = pictures.contact_sheet(lr[i], res.hr[i], res.restart_hr[i],
                                               res.restart_l2[i], int(res.restart[i]), cfg.eps)
                images.save_png(output_dir / files["sheet"], sheet)
                rec["sheet"] = str(output_dir / files["sheet"])
            if save_intermediate:
                _save_frames(output_dir, [f], res.hr[i:i + 1], factor, cfg.steps, frame_w)
            if group[i][2]:
                rec["notes"] = group[i][2]
            record(f, rec)
            summary.done += 1
            if not ok:
                say(f"{f.input}: l2 {l2:.5g} > eps {cfg.eps:g} (missed; best restart "
                    f"{int(res.restart[i])})")
        bar.faces_done(len(faces))

    try:
        for f in todo:
            try:
                x, notes = images.load_image(f.input, resolution=R)
            except images.ImageError as e:
                bad(f, str(e), "input")
                bar.faces_done(1)
                continue
            group = pending.setdefault(x.shape[0], [])
            group.append((f, x, list(notes)))
            if len(group) == chunk:
                run_chunk(pending.pop(x.shape[0]))
        for size in sorted(pending):
            run_chunk(pending.pop(size))
    finally:
        bar.close()

    _count({f.name: finished[f.name] for f in mine if f.name in finished}, summary)
    summary.wall_s = time.time() - t_start

    # --- merge (several processes) ------------------------------------------------------
    if pc > 1:
        payload = {"config_hash": h, "done": summary.done, "skipped": summary.skipped,
                   "time": time.time()}
        _barrier(f"pulse_jax_batch_end_{h}", output_dir, pi, pc, merge_timeout_s,
                 log, payload)
        if pi == 0:
            counts = []
            for k in range(pc):
                try:
                    counts.append(json.loads(_marker(output_dir, k, pc).read_text()))
                except (OSError, ValueError):
                    pass
            merge_manifests(output_dir)
            summary.merged = _merged_summary(output_dir, all_faces, h, summary, counts)
    elif _part_files(output_dir):
        merge_manifests(output_dir)  # leftovers of an earlier multi-process run
    return summary


def _merged_summary(output_dir: pathlib.Path, faces: list[Face], h: str,
                    local: Summary, counts: list[dict]) -> Summary:
    latest: dict[str, dict] = {}
    for r in read_records(output_dir):
        if r.get("config_hash") == h:
            latest[r.get("name")] = r
    recs = {f.name: latest[f.name] for f in faces if f.name in latest}
    s = Summary(faces=len(faces), config_hash=h, output_dir=local.output_dir,
                process_count=local.process_count)
    _count(recs, s)
    s.bad += len(faces) - len(recs)  # faces no process recorded (a process died)
    s.done = sum(int(c.get("done", 0)) for c in counts)
    s.skipped = sum(int(c.get("skipped", 0)) for c in counts)
    return s


def _save_frames(output_dir: pathlib.Path, faces: Sequence[Face], hr: np.ndarray, factor: int,
                 step: int, width: int) -> None:
    """Trajectory frames: ``{name}/HR/{name}_{step}.png`` and its bicubic downscale in LR/."""
    from pulse_jax import degrade
    hr = np.asarray(hr)[: len(faces)]
    lr = np.asarray(degrade.make_degradation("bicubic", factor)(np.clip(hr, 0, 1)))
    for i, f in enumerate(faces):
        images.save_png(output_dir / f.name / "HR" / f"{f.name}_{step:0{width}d}.png", hr[i])
        images.save_png(output_dir / f.name / "LR" / f"{f.name}_{step:0{width}d}.png", lr[i])
