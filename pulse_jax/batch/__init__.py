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
   :func:`pulse_jax.files.safe_stem`). Names are unique case-insensitively *with* their
   derived files (``{name}_lr.png``, ``{name}_sheet.png``, the frames folder ``{name}/``): a
   later face whose name would clash (``a/face.png`` and ``b/face.png``, or ``face.png`` and
   ``face.jpg``) becomes ``{name}-2``, ``{name}-3``, ... in input-list order.
2. **Lock.** The output folder is locked (:mod:`pulse_jax.folder_lock`): a second run into
   it, while this one runs, raises ``OutputBusyError`` naming this one (pid, host, start)
   and does nothing. The processes of one multi-process job share the folder.
3. **Resume.** Records already in the manifest (:mod:`pulse_jax.batch.manifest`) are read. A face
   is skipped when a record has the same ``name``, ``config_hash`` and ``input_sha256`` (so
   an edited input is redone), and its HR file (if one was written) exists. An input
   recorded as bad is not retried until its bytes change. Output options (``save_lr``,
   contact sheets, intermediates) are not hashed: turning one on does not redo a batch.
4. **Load.** Every face to do is loaded and validated (``images.load_image``); a bad input is
   recorded at once and the batch goes on. With a ``degradation`` (docs/degradations.md) the
   input must have the shape the operator makes of the generator's images, and with
   ``mask()`` its mask ``{stem}_mask.png`` is read from beside it; a missing or wrong mask is
   that face's bad input.
5. **Search.** Faces are grouped by LR shape and each group goes to
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
   process waits for the others (:mod:`pulse_jax.batch.multihost`) and process 0 merges the
   parts into ``manifest.jsonl`` (:func:`pulse_jax.batch.manifest.merge_manifests`; idempotent). The
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

Modules, one step each: ``options`` (:class:`BatchOptions`), ``plan`` (step 1, with
``faces``), ``ledger`` (what a process writes and has done), ``resume`` (3), ``load`` (4),
``groups`` (5), ``write`` (6), ``manifest`` (records, the config hash, the merge of step 7),
``multihost`` (processes meeting), ``summary``, ``progress``; ``run`` chains them.
"""

from pulse_jax.batch.faces import Face, plan_faces
from pulse_jax.batch.load import mask_path
from pulse_jax.batch.manifest import (MANIFEST, config_hash, degradation_fingerprint,
                                      generator_fingerprint, merge_manifests, part_files,
                                      part_name, read_records)
from pulse_jax.batch.options import BatchOptions
from pulse_jax.batch.run import run_batch
from pulse_jax.batch.summary import Summary, exit_status
from pulse_jax.devices import faces_mesh

__all__ = [
    "BatchOptions", "Face", "Summary", "config_hash", "exit_status", "faces_mesh",
    "generator_fingerprint", "merge_manifests", "plan_faces", "read_records", "run_batch",
]
