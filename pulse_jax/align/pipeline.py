"""Photos in, photos out: align every face, upsample the LR crops, paste the HR faces back.

:func:`upsample_photos` (``pulse-jax upsample --align``) runs, in ``output_dir``:

1. :func:`align_photos`: every face of every photo is aligned to the generator's framing
   (the template stored in its checkpoint, else FFHQ's) into ``aligned/`` with its LR
   version in ``aligned/lr/`` and ``aligned/manifest.jsonl``
   (:func:`pulse_jax.align.folder.align_folder`);
2. the batch search on ``aligned/lr`` (:func:`pulse_jax.batch.run_batch`), which writes
   ``{photo}_{k}.png`` and its ``manifest.jsonl`` as for any LR folder;
3. :func:`paste_results`: for every photo, each face's HR result is put back where its crop
   came from (:func:`pulse_jax.align.paste.paste_back`), and the photo is written as
   ``photos/{photo}.png`` (``photo``: its name from step 1, unique: ``me.jpg`` and ``me.png``,
   in that order, give ``photos/me.png`` and ``photos/me-2.png``), with one line per photo in
   ``photos/manifest.jsonl`` linking it to its faces: crop, LR, HR, l2 and success (or why a
   face has no result).

Steps 1 and 3 hold ``output_dir``'s lock (:mod:`pulse_jax.folder_lock`) as the batch does in
step 2, so a second run into the folder raises ``OutputBusyError`` instead of rewriting the
crops or photos of this one. In a multi-process job (``jax.distributed``) process 0 does
steps 1 and 3 alone, so ``aligned/`` and ``photos/`` are written once.

:func:`align_for_checkpoint` (``pulse-jax align``) is step 1 alone, into a folder of its own,
for the generator of a checkpoint.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pathlib
import sys
from typing import TYPE_CHECKING, Callable, Optional

from pulse_jax import files, images
from pulse_jax.align import folder, framing, paste, photos
from pulse_jax.files import safe_stem

if TYPE_CHECKING:
    from pulse_jax.batch import BatchOptions, Summary
    from pulse_jax.generator import Generator
    from pulse_jax.search import SearchConfig

__all__ = ["ALIGNED", "PHOTOS", "PasteSummary", "PhotosSummary", "align_for_checkpoint",
           "align_photos", "default_lr_size", "paste_results", "upsample_photos"]

ALIGNED = "aligned"
PHOTOS = "photos"

_logger = logging.getLogger(__name__)


def default_lr_size(resolution: int) -> int:
    """The LR side for a generator: ``resolution / 32`` as the reference's 1024 -> 32, but
    at least 8 pixels (8 for the shipped 64x64 model)."""
    return max(8, resolution // 32)


def align_photos(photos_spec, output_dir: os.PathLike, resolution: int, lr_size: int,
                 checkpoint_manifest: Optional[dict] = None, num_landmarks: int = 5,
                 log: Optional[Callable[[str], None]] = None) -> folder.AlignSummary:
    """Step 1: aligns the photos into ``{output_dir}/aligned`` for a generator of
    ``resolution`` whose checkpoint manifest is ``checkpoint_manifest``. In a multi-process
    job process 0 aligns and the others wait for it and take its counts, so the folder and
    its manifest are written once."""
    from pulse_jax.batch import multihost
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pi, pc = _process()
    with multihost.hold_output(out, pi, pc, log or _stderr):
        failure, summary = None, folder.AlignSummary()
        if pi == 0:
            try:
                summary = folder.align_folder(
                    photos_spec, out / ALIGNED, resolution, lr_size,
                    template=framing.template_for(checkpoint_manifest),
                    num_landmarks=num_landmarks, log=log)
            except Exception as e:  # noqa: BLE001 - told to the other processes, raised below
                failure = e
        if pc > 1:
            ok, *counts = multihost.from_process_0(
                [failure is None, summary.photos, summary.faces, summary.errors])
            if not ok and failure is None:
                raise ValueError("--align: process 0 could not align the photos (its "
                                 "message says why)")
            summary = folder.AlignSummary(*counts)
        if failure is not None:
            raise failure
        return summary


def _process() -> tuple[int, int]:
    """This process's index and count in a ``jax.distributed`` job."""
    import jax
    return jax.process_index(), jax.process_count()


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclasses.dataclass
class PasteSummary:
    """Counts of one :func:`paste_results` run."""

    photos: int = 0
    faces: int = 0
    missing: int = 0   # aligned faces without an HR result
    elsewhere: bool = False  # a process other than 0 of a job: process 0 pastes

    def format(self) -> str:
        if self.elsewhere:
            return "paste-back: process 0 pastes the faces into the photos"
        return (f"paste-back: {self.photos} photos written with {self.faces} faces replaced"
                + (f"; {self.missing} faces had no result" if self.missing else ""))


def _key(path) -> str:
    return str(pathlib.Path(path).resolve())


def _photo_faces(aligned: list[dict], results: dict[str, dict]) -> dict[str, list[dict]]:
    """Per photo, its aligned faces with their batch record (``None`` if there is none)."""
    per_photo: dict[str, list[dict]] = {}
    for a in aligned:
        if "error" in a or not a.get("lr_output"):
            continue
        per_photo.setdefault(a["input"], []).append(
            {"align": a, "result": results.get(_key(a["lr_output"]))})
    return per_photo


def paste_results(output_dir: os.PathLike,
                  log: Optional[Callable[[str], None]] = None) -> PasteSummary:
    """Step 3: pastes every HR result of ``output_dir`` back into its photo (module doc);
    in a multi-process job only process 0 does, after it merged the manifests."""
    from pulse_jax.batch import multihost
    out = pathlib.Path(output_dir)
    pi, pc = _process()
    with multihost.hold_output(out, pi, pc, log or _stderr):
        return _paste_all(out, log) if pi == 0 else PasteSummary(elsewhere=True)


def _paste_all(out: pathlib.Path, log: Optional[Callable[[str], None]]) -> PasteSummary:
    from pulse_jax.batch import manifest as batch_manifest
    aligned = files.read_jsonl(out / ALIGNED / folder.MANIFEST)
    results = {_key(r["input"]): r for r in batch_manifest.read_records(out) if "input" in r}
    target = out / PHOTOS / "manifest.jsonl"
    target.unlink(missing_ok=True)
    summary = PasteSummary()
    per_photo = _photo_faces(aligned, results)
    fallback = folder.photo_names(list(per_photo))  # an aligned/ older than photo_name
    for (photo_path, faces), name in zip(per_photo.items(), fallback):
        photo = photos.load_photo(photo_path)
        links = []
        for f in faces:
            a, r = f["align"], f["result"]
            link = {"face_index": a["face_index"], "crop": a["output"], "lr": a["lr_output"]}
            if r is None or not r.get("output"):
                link["error"] = (r or {}).get("error", "no HR result (not searched yet, or it "
                                                      "missed eps with write_failures=False)")
                summary.missing += 1
            else:
                hr = images.load_image(r["output"])[0]
                photo = paste.paste_back(photo, hr, a["quad"])
                link.update(hr=r["output"], l2=r.get("l2"), success=r.get("success"))
                summary.faces += 1
            links.append(link)
        name = safe_stem(faces[0]["align"].get("photo_name", name))
        written = images.save_png(out / PHOTOS / f"{name}.png", photo)
        files.append_jsonl(target, {"input": photo_path, "output": str(written), "faces": links})
        summary.photos += 1
        if log is not None:
            log(f"{photo_path} -> {written}: {sum('hr' in x for x in links)} of {len(links)} "
                "faces replaced")
    return summary


def _checkpoint_facts(choice: str, log: Callable[[str], None]
                      ) -> tuple[Optional[int], Optional[dict], str]:
    """(resolution, manifest, path) of the checkpoint ``choice``; (None, None, "") if no
    checkpoint can be found and none was asked for."""
    from pulse_jax import weights
    try:
        path = weights.resolve_checkpoint(choice, log=log)
        manifest = weights.read_manifest(path)
    except (weights.CheckpointError, OSError, ValueError):
        if choice:
            raise
        return None, None, ""
    return int(manifest["config"]["resolution"]), manifest, str(path)


def align_for_checkpoint(photos_spec, output_dir: os.PathLike, checkpoint: str = "", *,
                         size: int = 0, lr_size: int = 32, num_landmarks: int = 5,
                         template: str = "auto", log: Optional[Callable[[str], None]] = None,
                         **options) -> folder.AlignSummary:
    """Aligns the photos of ``photos_spec`` into ``output_dir`` for the generator of
    ``checkpoint`` (:func:`pulse_jax.weights.resolve_checkpoint`; "" and none found: crops
    of 1024 px framed as FFHQ).

    Args:
      size: the crops' side; 0: the generator's resolution (else 1024).
      lr_size: the LR side, dividing ``size`` (0: no LR files).
      num_landmarks: dlib's 5-point model (licence-clean) or 68 (the reference's recipe).
      template: "auto" (the checkpoint's stored template if it has one, else FFHQ's),
        "ffhq" or "checkpoint" (:func:`pulse_jax.align.framing.template_for`).
      options: :func:`pulse_jax.align.folder.align_folder`'s (``min_face_px`` ...).

    Returns:
      the :class:`~pulse_jax.align.folder.AlignSummary`. ImportError without the align extra
      (before anything else is done), ``CheckpointError`` for a checkpoint asked for and
      not found, ValueError (``ImageError``: no photos) and ``OutputBusyError`` as
      :func:`~pulse_jax.align.folder.align_folder`.
    """
    from pulse_jax.align import landmarks
    say = log or _logger.info
    landmarks.load_dlib()
    landmarks.predictor_path(num_landmarks)
    resolution, manifest, path = _checkpoint_facts(checkpoint, say)
    tpl = framing.template_for(manifest, template, path)
    size = size or resolution or 1024
    say(f"pulse-jax align: {size}x{size} crops, template {tpl.name}, "
        f"{num_landmarks} landmarks" + (f", for {path}" if path else ""))
    return folder.align_folder(photos_spec, output_dir, size, lr_size, tpl, num_landmarks,
                               log=say, **options)


@dataclasses.dataclass
class PhotosSummary:
    """What :func:`upsample_photos` did, step by step."""

    aligned: folder.AlignSummary
    batch: Summary
    pasted: PasteSummary

    def exit_status(self) -> int:
        """The batch's status (:func:`pulse_jax.batch.exit_status`), except that a photo or
        face that could not be aligned makes an otherwise clean run :data:`BAD_INPUT
        <pulse_jax.exit_codes.BAD_INPUT>`."""
        from pulse_jax import batch, exit_codes
        status = batch.exit_status(self.batch)
        if self.aligned.errors and status == exit_codes.OK:
            return exit_codes.BAD_INPUT
        return status


def upsample_photos(generator: Generator, photos_spec, output_dir: os.PathLike,
                    search_config: Optional[SearchConfig] = None,
                    options: Optional[BatchOptions] = None, *,
                    checkpoint_manifest: Optional[dict] = None, lr_size: int = 0,
                    num_landmarks: int = 5,
                    log: Optional[Callable[[str], None]] = None) -> PhotosSummary:
    """Photos in, photos out: the three steps of the module doc, in ``output_dir``.

    Args:
      generator: the :class:`~pulse_jax.Generator` (with a Gaussian fit).
      photos_spec: photos (:func:`pulse_jax.inputs.discover_inputs`: a folder, a glob, a
        list file).
      search_config, options: the search and the batch options of step 2
        (:func:`pulse_jax.batch.run_batch`; None: their defaults).
      checkpoint_manifest: the generator's checkpoint manifest, whose stored framing
        template the crops follow (None or none stored: FFHQ's).
      lr_size: the LR crops' side; 0: :func:`default_lr_size` of the generator.
      num_landmarks: 5 (licence-clean) or 68 (the reference's recipe, non-commercial).
      log: told every step's messages and summaries (default ``logging.info``).

    Returns:
      a :class:`PhotosSummary` (``exit_status()`` is the command's). ValueError when no face
      could be aligned, and as the steps raise (``ImageError``: no photos; ImportError
      without the align extra; ``OutputBusyError``: another run writes into ``output_dir``).
    """
    from pulse_jax import batch
    from pulse_jax.search import SearchConfig
    say = log or _logger.info
    lr_size = lr_size or default_lr_size(generator.resolution)
    aligned = align_photos(photos_spec, output_dir, generator.resolution, lr_size,
                           checkpoint_manifest, num_landmarks, say)
    say(aligned.format())
    if not aligned.faces:
        raise ValueError(f"--align: no face could be aligned in {photos_spec}")
    lr_dir = pathlib.Path(output_dir) / ALIGNED / folder.LR_FOLDER
    summary = batch.run_batch(generator, str(lr_dir), output_dir,
                              search_config or SearchConfig(), options, log=say)
    say(summary.format())
    pasted = paste_results(output_dir, say)
    say(pasted.format())
    return PhotosSummary(aligned, summary, pasted)
