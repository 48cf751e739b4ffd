"""Many faces: the PULSE pipeline from image files to HR images and a manifest.

:func:`run_batch` is the library form of the ``pulse-jax upsample`` command (no flags are
parsed here)::

    from pulse_jax import batch, load_generator, search
    gen = load_generator("~/.cache/pulse_jax/checkpoints/ffhq1024")
    summary = batch.run_batch(gen, "input/", "runs/", search.SearchConfig(steps=100),
                              batch.BatchOptions(seed=0, save_contact_sheet=True))
    print(summary.format())

The pipeline, for every process:

1. **Plan.** ``discover_inputs`` lists the files (folders and globs sorted by name, list files
   in their order). With ``duplicates = d`` every file gives ``d`` faces. The *face id* of
   duplicate ``k`` of file ``i`` is ``i * d + k``: a face's random starts come from
   ``(seed, face id, restart)`` only, so they are the same however the list is split over
   devices and processes. Process ``p`` of ``n`` takes the faces with ``face_id % n == p``.
   A face is written as ``{name}.png`` where ``name`` is the file's stem, as in the
   reference, or ``{stem}_{k+1}`` for duplicates (``d > 1``). A stem that is not a plain
   file name has its path separators, control characters and leading dots made ``_``
   (``...png`` -> ``__``: nothing is written outside the output folder;
   :func:`pulse_jax.faces.safe_stem`). Names are unique case-insensitively *with* their
   derived files (``{name}_lr.png``, ``{name}_sheet.png``, the frames folder ``{name}/``): a
   later face whose name would clash (``a/face.png`` and ``b/face.png``, or ``face.png`` and
   ``face.jpg``) becomes ``{name}-2``, ``{name}-3``, ... in input-list order.
2. **Lock.** The output folder is locked (:mod:`pulse_jax.folder_lock`): a second run into
   it, while this one runs, raises ``OutputBusyError`` naming this one (pid, host, start)
   and does nothing. The processes of one multi-process job share the folder.
3. **Resume.** Records already in the manifest (:mod:`pulse_jax.manifest`) are read. A face
   is skipped when a record has the same ``name``, ``config_hash`` and ``input_sha256`` (so
   an edited input is redone), and its HR file (if one was written) exists. An input
   recorded as bad is not retried until its bytes change. Output options (``save_lr``,
   contact sheets, intermediates) are not hashed: turning one on does not redo a batch.
4. **Load.** Every face to do is loaded and validated (``images.load_image``); a bad input is
   recorded at once and the batch goes on. With a ``degradation`` (docs/degradations.md) the
   input must have the shape the operator makes of the generator's images, and with
   ``mask()`` its mask ``{stem}_mask.png`` is read from beside it; a missing or wrong mask is
   that face's bad input.
5. **Search.** Faces are grouped by LR size and each group goes to
   :func:`pulse_jax.search.upsample_chunks`, which searches ``batch_size * devices`` faces at
   a time, sharded over the local devices (mesh axis ``"faces"``), the last chunk padded.
   ``batch_size`` is the number of faces *per device* and is a setting, never derived from
   the device count: with the same ``batch_size`` a face gets the same bits on 1 or 4
   devices and on 1 or 2 processes (README.md, "Reproducibility"). A chunk whose search
   raises (out of memory, a full disk while it is written) has its faces not yet written
   recorded as failed (retried by the next run) and the others go on.
6. **Write.** As each chunk finishes, for each face in order: ``{name}.png`` (HR), optionally
   ``{name}_lr.png`` (the HR's bicubic downscale) and ``{name}_sheet.png`` (``LR | best |
   every restart``, labelled with l2), then one manifest line. Every image is written
   atomically and the manifest line last, in one ``write``, so a killed run loses at most
   the faces in flight and leaves no partial file. With ``save_intermediate``, frames of the
   best image so far go to ``{name}/HR/{name}_{step}.png`` and ``{name}/LR/...`` after every
   ``config.chunk_steps`` steps (``chunk_steps=1`` gives every step, as the reference), plus
   the final result as frame ``steps``.
7. **Merge.** With one process the lines go straight to ``manifest.jsonl``. With ``n``
   processes, process ``p`` appends to ``manifest.part{p}of{n}.jsonl``; at the end every
   process waits for the others (:mod:`pulse_jax.multihost`) and process 0 merges the parts
   into ``manifest.jsonl`` (:func:`pulse_jax.manifest.merge_manifests`; idempotent). The
   output folder must be shared by the processes.

Manifest records (one JSON line per face)::

    {"input": "input/a.png", "name": "a", "face_id": 0, "output": "runs/a.png",
     "l2": 0.0017, "success": true, "eps": 0.002, "seed": 0, "restart": 1,
     "restart_l2": [0.0031, 0.0017], "steps": 100, "restarts": 2, "wall_s": 5.2,
     "config_hash": "3c1f...", "input_sha256": "...", "lr_size": 32, "factor": 32,
     "degradation": "downscale(factor=32,kernel=bicubic)", ...}

``l2`` is the mean squared error, in [0, 1] units, of the saved HR's bicubic downscale against
the input (with a ``degradation``: of its degradation, over the observed pixels); ``success``
is ``l2 <= eps`` (``eps_effective = eps + sigma^2`` with a noise model). ``degradation``
names the operator (``downscale(factor=F,kernel=bicubic)`` by default); per-face masks add
``mask`` and ``mask_sha256``. ``wall_s`` is the wall time of the chunk that
produced the face (faces searched together share it). Unlike the reference, which writes an
image only on success, the HR is written for every face (``write_failures=False`` restores the
reference: no file, ``"output": null``). A bad input gets ``{"input", "name", "face_id",
"error", "error_kind": "input", "config_hash", "input_sha256"}``; a search that raised gets
``"error_kind": "search"`` and is retried by the next run.

Exit status of a batch (:func:`exit_status`): 0 when every face has a result within eps; 1
when any input was bad or any search failed; 3 when every input was processed but some face
missed eps. (Status 2, usage/configuration/weights errors, and 4, the output folder in use
by another run (``OutputBusyError``), belong to the command line.)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Optional

import jax
import numpy as np

from pulse_jax import degrade, files, images, multihost, pictures
from pulse_jax.devices import faces_mesh
from pulse_jax import search as search_lib
from pulse_jax.faces import Face, at_least_one, plan_faces
from pulse_jax.generator import Generator
from pulse_jax.manifest import (MANIFEST, config_hash, generator_fingerprint, merge_manifests,
                                part_files, part_name, read_records)
from pulse_jax.progress import FaceBar
from pulse_jax.summary import Summary, count_records, exit_status, merged_summary

__all__ = [
    "BatchOptions", "Face", "Summary", "config_hash", "exit_status", "faces_mesh",
    "generator_fingerprint", "merge_manifests", "plan_faces", "read_records", "run_batch",
]

_logger = logging.getLogger(__name__)


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
      save_contact_sheet: also write ``{name}_sheet.png`` (LR | best | every restart).
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
    """

    seed: int = 0
    batch_size: int = 1
    devices: Any = 0
    duplicates: int = 1
    save_lr: bool = False
    save_contact_sheet: bool = False
    save_intermediate: bool = False
    write_failures: bool = True
    merge_timeout_s: float = 7 * 24 * 3600.0
    progress: bool = True
    degradation: str = ""

    def __post_init__(self):
        if self.degradation:
            degrade.parse(self.degradation)  # a bad string fails here, before any face
        at_least_one("batch_size", self.batch_size)
        at_least_one("duplicates", self.duplicates)
        if not self.merge_timeout_s > 0:
            raise ValueError(f"merge_timeout_s must be > 0, got {self.merge_timeout_s!r}")


# --------------------------------------------------------------------------------------------
# The pipeline
# --------------------------------------------------------------------------------------------


class _Run:
    """One process's share of a batch: where it writes, what is finished, how it reports."""

    def __init__(self, generator: Generator, output_dir: pathlib.Path,
                 cfg: search_lib.SearchConfig, options: BatchOptions,
                 op: Optional[degrade.Operator], faces: list[Face], process: tuple[int, int],
                 log: Callable[[str], None]):
        self.generator, self.output_dir, self.cfg, self.options = generator, output_dir, cfg, options
        self.pi, self.pc = process
        self.op = op  # options.degradation parsed (None: the reference bicubic)
        self.masks = degrade.has_placeholder(op)
        self.mask_shas: dict[pathlib.Path, Optional[str]] = {}
        self.hash = config_hash(generator, cfg, options.seed,
                                "" if self.op is None else degradation_fingerprint(self.op))
        self.manifest = output_dir / (MANIFEST if self.pc == 1 else part_name(*process))
        self.summary = Summary(faces=len(faces), config_hash=self.hash,
                               output_dir=str(output_dir), process_index=self.pi,
                               process_count=self.pc)
        self.shas: dict[pathlib.Path, Optional[str]] = {}
        self.finished: dict[str, dict] = {}   # name -> record (this run's and earlier)
        self.bar = FaceBar(0, False, "")
        self._log = log

    def say(self, msg: str) -> None:
        self.bar.log(self._log, msg)

    def record(self, f: Face, rec: dict) -> None:
        rec = {"input": str(f.input), "name": f.name, "face_id": f.face_id, **rec,
               "config_hash": self.hash, "input_sha256": self.shas.get(f.input),
               **({"mask_sha256": self.mask_shas.get(f.input)} if self.masks else {}),
               "process": self.pi, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        files.append_jsonl(self.manifest, rec)
        self.finished[f.name] = rec

    def bad(self, f: Face, message: str, kind: str) -> None:
        self.say(f"error: {message}")
        self.summary.errors.append((str(f.input), message))
        self.record(f, {"error": message, "error_kind": kind})


def _resume(run: _Run, mine: list[Face]) -> list[Face]:
    """The faces of ``mine`` that no current record covers (module doc, step 3)."""
    by_name: dict[str, list[dict]] = {}
    for r in read_records(run.output_dir):
        by_name.setdefault(r.get("name"), []).append(r)
    todo = []
    for f in mine:
        sha = run.shas.setdefault(f.input, _sha256_file(f.input))
        if run.masks:
            run.mask_shas.setdefault(f.input, _sha256_file(mask_path(f.input)))
        prev = [r for r in by_name.get(f.name, []) if _complete(r, run.hash, sha, run.output_dir)
                and r.get("mask_sha256") == run.mask_shas.get(f.input)]
        if prev:
            run.finished[f.name] = prev[-1]
            run.summary.skipped += 1
            if "error" in prev[-1]:
                run.summary.errors.append((str(f.input), prev[-1]["error"]))
        else:
            todo.append(f)
    _clean_tmp(run.output_dir, {v for f in todo for v in f.files().values()})
    if run.summary.skipped:
        run.say(f"resuming: {run.summary.skipped} of {len(mine)} faces already complete "
                f"(config hash {run.hash}); {len(todo)} to do")
    return todo


_Loaded = tuple[Face, np.ndarray, list[str], Optional[degrade.Operator]]


def _load(run: _Run, todo: list[Face]) -> dict[Any, list[_Loaded]]:
    """Good faces (with their operator, None for the default) grouped by LR shape, in
    order; bad inputs are recorded (step 4)."""
    groups: dict[Any, list[_Loaded]] = {}
    for f in todo:
        try:
            if run.op is None:
                x, notes = images.load_image(f.input, resolution=run.generator.resolution)
                op = None
            else:
                x, notes = images.load_image(f.input)
                op, x = _face_operator(run, f, x, notes)
        except images.ImageError as e:
            run.bad(f, str(e), "input")
            run.bar.faces_done(1)
            continue
        groups.setdefault(x.shape[0] if op is None else x.shape, []).append((f, x, list(notes), op))
    return groups


def mask_path(input_path: pathlib.Path) -> pathlib.Path:
    """Where the runner looks for a face's mask: ``{stem}_mask.png`` beside its input."""
    return input_path.with_name(f"{input_path.stem}_mask.png")


def degradation_fingerprint(op: degrade.Operator) -> str:
    """The operator's description and the SHA-256 of its arrays (a PSF's, a mask file's)."""
    leaves = [np.ascontiguousarray(np.asarray(x, np.float32))
              for x in jax.tree_util.tree_leaves(op)]
    return op.describe() + "|" + hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()


def _face_operator(run: _Run, f: Face, x: np.ndarray,
                   notes: list[str]) -> tuple[degrade.Operator, np.ndarray]:
    """The face's operator (its mask read from ``{stem}_mask.png`` for ``mask()``) and its
    observation with the channels the operator makes; ImageError naming the problem."""
    ops = list(degrade.flatten(run.op))
    for i, o in enumerate(ops):
        if isinstance(o, degrade.Mask) and o.placeholder:
            mp = mask_path(f.input)
            if not mp.is_file():
                raise images.ImageError(f.input, f"the degradation has mask() but its mask "
                                                 f"{mp.name} is missing beside it")
            try:
                ops[i] = o.filled(degrade.read_mask(str(mp)).mask)  # still "mask()": one
                # structure for every face, so their operators stack
            except ValueError as e:
                raise images.ImageError(f.input, str(e)) from None
    op = degrade.compose(*ops)
    r, c = run.generator.resolution, run.generator.config.num_channels
    try:
        want = op.out_shape((1, r, r, c))[1:]
    except ValueError as e:
        raise images.ImageError(f.input, str(e)) from None
    if want[-1] == 1 and x.shape[-1] == 3:
        if np.ptp(x, axis=-1).max() > 1.5 / 255:
            raise images.ImageError(f.input, f"the degradation {op.describe()!r} observes one "
                                             "gray channel but this image has color")
        x = x[..., :1]
        notes.append("gray observation: one channel kept")
    if x.shape != want:
        raise images.ImageError(
            f.input, f"image is {x.shape[1]}x{x.shape[0]}x{x.shape[2]} (width x height x "
                     f"channels) but {op.describe()!r} observes the {r}x{r} generator's images "
                     f"as {want[1]}x{want[0]}x{want[2]}")
    return op, x


def _search_group(run: _Run, group: list[_Loaded], mesh) -> None:
    """Search faces of one LR size chunk by chunk, writing each chunk as it ends (step 5)."""
    opts, cfg = run.options, run.cfg
    factor = run.generator.resolution // group[0][1].shape[0]
    frame_w = max(2, len(str(cfg.steps)))
    offset = 0   # group[:offset] is written or recorded as failed
    while offset < len(group):
        part = group[offset:]

        def on_progress(p: search_lib.Progress, part=part) -> None:
            run.bar.step(p, p.faces[1] - p.faces[0])
            if opts.save_intermediate:
                faces = part[p.faces[0]:p.faces[1]]
                _save_frames(run.output_dir, [g[0] for g in faces], p.render(), factor,
                             p.step - 1, frame_w, [g[3] for g in faces])

        chunk = search_lib.faces_per_call(len(part), opts.batch_size, mesh)
        end = min(offset + chunk, len(group))  # group[offset:end]: the chunk in flight
        try:
            run.bar.chunk_started()
            t0 = time.perf_counter()
            for (start, stop), res in search_lib.upsample_chunks(
                    run.generator, np.stack([g[1] for g in part]), cfg, opts.seed,
                    face_ids=[g[0].face_id for g in part], batch_size=opts.batch_size,
                    mesh=mesh, progress=on_progress,
                    # One shared operator keeps the reference's path for its bicubic.
                    degradation=([g[3] for g in part] if run.masks else run.op)):
                wall = time.perf_counter() - t0
                run.summary.search_s += wall
                run.summary.face_steps += (stop - start) * cfg.steps
                for i, (f, lr, notes, op) in enumerate(part[start:stop]):
                    _write_face(run, f, lr, notes, res, i, factor, wall, frame_w, op)
                    offset += 1  # written: a failure after this does not blame it
                    run.bar.faces_done(1)
                end = min(offset + chunk, len(group))
                run.bar.chunk_started()
                t0 = time.perf_counter()
        except Exception as e:  # noqa: BLE001 - recorded, the batch goes on
            run.say(traceback.format_exc())
            failed = group[offset:end]  # the chunk that raised, less what it wrote
            for f, *_ in failed:
                run.bad(f, f"{f.input}: search failed: {type(e).__name__}: {e}", "search")
            run.bar.faces_done(len(failed))
            offset = end


def _write_face(run: _Run, f: Face, lr: np.ndarray, notes: list[str], res: search_lib.Result,
                i: int, factor: int, wall: float, frame_w: int,
                op: Optional[degrade.Operator] = None) -> None:
    """One face's images, then its manifest line (step 6)."""
    opts, cfg, out_dir = run.options, run.cfg, run.output_dir
    l2, ok, names = float(res.l2[i]), bool(res.success[i]), f.files()
    out = None
    if ok or opts.write_failures:
        images.save_png(out_dir / names["hr"], res.hr[i])
        out = str(out_dir / names["hr"])
    rec = {"output": out, "l2": l2 if math.isfinite(l2) else None, "success": ok,
           "eps": cfg.eps, "seed": int(opts.seed), "restart": int(res.restart[i]),
           "restart_l2": [float(x) if math.isfinite(x) else None
                          for x in np.asarray(res.restart_l2[i], np.float64)],
           "steps": cfg.steps, "restarts": cfg.restarts, "wall_s": round(wall, 4),
           "lr_size": int(lr.shape[0]), "factor": factor,
           "degradation": (f"downscale(factor={factor},kernel=bicubic)" if op is None
                           else op.describe())}
    sigma2 = 0.0 if op is None else float(np.asarray(degrade.noise_variance(op)))
    if sigma2:
        rec["eps_effective"] = cfg.eps + sigma2
    if op is not None and run.masks:
        rec["mask"] = str(mask_path(f.input))
    if opts.save_lr:
        images.save_png(out_dir / names["lr"], _rgb(res.lr[i]))
        rec["lr_output"] = str(out_dir / names["lr"])
    if opts.save_contact_sheet:
        sheet = pictures.contact_sheet(_rgb(lr), res.hr[i], res.restart_hr[i],
                                       res.restart_l2[i], int(res.restart[i]), cfg.eps + sigma2)
        images.save_png(out_dir / names["sheet"], sheet)
        rec["sheet"] = str(out_dir / names["sheet"])
    if opts.save_intermediate:
        _save_frames(out_dir, [f], res.hr[i:i + 1], factor, cfg.steps, frame_w, [op])
    if notes:
        rec["notes"] = notes
    run.record(f, rec)
    run.summary.done += 1
    if not ok:
        run.say(f"{f.input}: l2 {l2:.5g} > eps {cfg.eps + sigma2:g} (missed; best restart "
                f"{int(res.restart[i])})")


def _merge(run: _Run, all_faces: list[Face]) -> None:
    """Wait for the other processes; process 0 merges their parts (step 7)."""
    out, pi, pc, s = run.output_dir, run.pi, run.pc, run.summary
    if pc == 1:
        if part_files(out):
            merge_manifests(out)  # leftovers of an earlier multi-process run
        return
    payload = {"config_hash": run.hash, "done": s.done, "skipped": s.skipped, "time": time.time()}
    multihost.wait_for_all(f"pulse_jax_batch_end_{run.hash}", out, pi, pc,
                           run.options.merge_timeout_s, run.say, payload)
    if pi == 0:
        counts = []
        for k in range(pc):
            try:
                counts.append(json.loads(multihost.marker(out, k, pc).read_text()))
            except (OSError, ValueError):
                pass
        merge_manifests(out)
        s.merged = merged_summary(out, all_faces, run.hash, s, counts)


def run_batch(
    generator: Generator,
    inputs: Any,
    output_dir: os.PathLike,
    search_config: search_lib.SearchConfig = search_lib.SearchConfig(),
    options: Optional[BatchOptions] = None,
    *,
    process_index: Optional[int] = None,
    process_count: Optional[int] = None,
    log: Optional[Callable[[str], None]] = None,
    **option_fields: Any,
) -> Summary:
    """Upsample every face named by ``inputs`` into ``output_dir`` (see the module doc).

    Args:
      generator: the :class:`Generator` (with a Gaussian fit).
      inputs: what :func:`pulse_jax.images.discover_inputs` accepts (a folder, glob, list
        file, file, or a sequence of them), or a list of paths.
      output_dir: created if missing.
      search_config: the :class:`pulse_jax.search.SearchConfig`.
      options: the :class:`BatchOptions`; ``option_fields`` (e.g. ``seed=3``) replace
        fields of it, or of the defaults.
      process_index, process_count: this process's share (default: ``jax.process_index()``
        and ``jax.process_count()``).
      log: called with each message (bad inputs, warnings); default ``logging.info``.

    Returns:
      The :class:`Summary` (use :func:`exit_status` for a process exit code).

    Raises:
      pulse_jax.images.ImageError: ``inputs`` names nothing (an empty folder, a missing path).
      pulse_jax.folder_lock.OutputBusyError: another run is writing into ``output_dir``
        (nothing was done; exit status 4 on the command line).
      ValueError: invalid arguments.
    """
    t_start = time.time()
    opts = dataclasses.replace(options or BatchOptions(), **option_fields)
    pi = jax.process_index() if process_index is None else int(process_index)
    pc = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= pi < pc:
        raise ValueError(f"process_index {pi} is not in [0, {pc})")
    search_lib.check_generator(generator)
    mesh = faces_mesh(opts.devices)
    cfg = search_config
    if opts.save_contact_sheet and not cfg.keep_restart_images:
        cfg = dataclasses.replace(cfg, keep_restart_images=True)
    output_dir = pathlib.Path(output_dir)

    paths = (list(inputs) if isinstance(inputs, (list, tuple)) and inputs
             and all(isinstance(p, os.PathLike) for p in inputs)
             else images.discover_inputs(inputs))
    op = degrade.parse(opts.degradation) if opts.degradation else None
    if degrade.has_placeholder(op):
        paths = [p for p in paths if not pathlib.Path(p).stem.endswith("_mask")]  # masks
    all_faces = plan_faces(paths, opts.duplicates)
    mine = [f for f in all_faces if f.face_id % pc == pi]
    run = _Run(generator, output_dir, cfg, opts, op, mine, (pi, pc), log or _logger.info)
    if pi == 0:
        n_dev = 1 if mesh is None else mesh.size
        run.say(f"pulse-jax: {len(paths)} input file(s) -> {output_dir}; generator "
                f"{generator.resolution}x{generator.resolution}; {n_dev} local device(s) x "
                f"{pc} process(es)")
    output_dir.mkdir(parents=True, exist_ok=True)
    with multihost.hold_output(output_dir, pi, pc, run.say):  # before anything is touched
        if pc > 1:
            multihost.marker(output_dir, pi, pc).unlink(missing_ok=True)  # an earlier run's
        todo = _resume(run, mine)
        run.bar = FaceBar(len(todo), opts.progress, "PULSE")
        try:
            groups = _load(run, todo)
            for size in sorted(groups):
                _search_group(run, groups[size], mesh)
        finally:
            run.bar.close()
        count_records({f.name: run.finished[f.name] for f in mine if f.name in run.finished},
                      run.summary)
        run.summary.wall_s = time.time() - t_start
        _merge(run, all_faces)
    return run.summary


def _sha256_file(path: pathlib.Path) -> Optional[str]:
    try:
        return files.sha256_file(path)
    except OSError:
        return None



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


def _rgb(x: np.ndarray) -> np.ndarray:
    """A one-channel (gray) image as 3 equal channels, for PNGs and sheets."""
    x = np.asarray(x)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x


def _save_frames(output_dir: pathlib.Path, faces: Sequence[Face], hr: np.ndarray, factor: int,
                 step: int, width: int,
                 ops: Optional[Sequence[Optional[degrade.Operator]]] = None) -> None:
    """Trajectory frames: ``{name}/HR/{name}_{step}.png`` and its degradation in LR/ (the
    bicubic downscale, or each face's operator in ``ops``)."""
    hr = np.clip(np.asarray(hr)[: len(faces)], 0, 1)
    if ops is None or ops[0] is None:
        lr = np.asarray(degrade.make_degradation("bicubic", factor)(hr))
    else:
        lr = np.concatenate([np.asarray(op(hr[i:i + 1])) for i, op in enumerate(ops)])
    lr = _rgb(lr)
    for i, f in enumerate(faces):
        images.save_png(output_dir / f.name / "HR" / f"{f.name}_{step:0{width}d}.png", hr[i])
        images.save_png(output_dir / f.name / "LR" / f"{f.name}_{step:0{width}d}.png", lr[i])
