"""Photos in, photos out: align every face, upsample the LR crops, paste the HR faces back.

:func:`upsample_photos` (``pulse-jax upsample --align``) runs, in ``output_dir``:

1. :func:`align_photos`: every face of every photo is detected (down to about 20 px, each
   checked by a second detector, :mod:`pulse_jax.align.detect`), the faces to replace are
   chosen and each gets its own LR side (:mod:`pulse_jax.align.rules`: the largest the
   generator accepts that is not above the face's size in the photo; faces already at the
   generator's resolution are left alone), then aligned to the generator's framing (the
   template stored in its checkpoint, else FFHQ's) into ``aligned/`` with its LR version in
   ``aligned/lr/`` and ``aligned/manifest.jsonl`` (:func:`pulse_jax.align.folder.align_folder`);
2. the batch search on ``aligned/lr`` (:func:`pulse_jax.batch.run_batch`), which writes
   ``{photo}_{k}.png`` and its ``manifest.jsonl`` as for any LR folder (faces of different
   LR sizes are searched in groups of one size);
3. :func:`~pulse_jax.align.compose.paste_results`: every photo is made ``upscale`` times
   larger, each face's HR result drawn where its crop came from, at ``upscale`` times the
   crop's size, and written as ``photos/{photo}.png`` (``photo``: its name from step 1,
   unique: ``me.jpg`` and ``me.png``, in that order, give ``photos/me.png`` and
   ``photos/me-2.png``), with one line per photo in ``photos/manifest.jsonl``: the
   photo-level downscaling check and every detection, replaced or not, and why
   (:func:`pulse_jax.align.compose.photo_record`).

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

from pulse_jax.align import folder, framing
from pulse_jax.align.compose import PHOTOS, PasteSummary, paste_results
from pulse_jax.align.folder import ALIGNED
from pulse_jax.align.rules import FaceRules, default_lr_size

if TYPE_CHECKING:
    from pulse_jax.batch import BatchOptions, Summary
    from pulse_jax.generator import Generator
    from pulse_jax.search import SearchConfig

__all__ = ["ALIGNED", "PHOTOS", "PasteSummary", "PhotosSummary", "align_for_checkpoint",
           "align_photos", "default_lr_size", "paste_results", "upsample_photos"]

_logger = logging.getLogger(__name__)


def align_photos(photos_spec, output_dir: os.PathLike, resolution: int,
                 rules: FaceRules = FaceRules(), checkpoint_manifest: Optional[dict] = None,
                 num_landmarks: int = 5, log: Optional[Callable[[str], None]] = None,
                 **options) -> folder.AlignSummary:
    """Step 1: aligns the photos into ``{output_dir}/aligned`` for a generator of
    ``resolution`` whose checkpoint manifest is ``checkpoint_manifest``, choosing faces and
    LR sides by ``rules`` (``options``: :func:`pulse_jax.align.folder.align_folder`'s). In a
    multi-process job process 0 aligns and the others wait for it and take its counts, so
    the folder and its manifest are written once."""
    from pulse_jax.batch import multihost
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    pi, pc = multihost.process()
    with multihost.hold_output(out, pi, pc, log or _stderr):
        failure, summary = None, folder.AlignSummary()
        if pi == 0:
            try:
                summary = folder.align_folder(
                    photos_spec, out / ALIGNED, resolution, rules,
                    template=framing.template_for(checkpoint_manifest),
                    num_landmarks=num_landmarks, log=log, **options)
            except Exception as e:  # noqa: BLE001 - told to the other processes, raised below
                failure = e
        if pc > 1:
            ok, *counts = multihost.from_process_0(
                [failure is None, summary.photos, summary.faces, summary.errors,
                 summary.skipped])
            if not ok and failure is None:
                raise ValueError("--align: process 0 could not align the photos (its "
                                 "message says why)")
            summary = folder.AlignSummary(*counts)
        if failure is not None:
            raise failure
        return summary


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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
      options: ``min_face_px``, ``min_inside``, ``verify`` and ``faces``
        (:class:`~pulse_jax.align.rules.FaceRules`; every face of any size is aligned),
        and :func:`pulse_jax.align.folder.align_folder`'s (``detect_options`` ...).

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
    picked = {k: options.pop(k) for k in ("min_face_px", "min_inside", "verify", "faces")
              if k in options}
    rules = FaceRules(lr_size=lr_size, replace_large_faces=True, **picked)
    return folder.align_folder(photos_spec, output_dir, size, rules, tpl, num_landmarks,
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
        <pulse_jax.exit_codes.BAD_INPUT>`, and so does a photo with no face replaced."""
        from pulse_jax import batch, exit_codes
        status = batch.exit_status(self.batch)
        if (self.aligned.errors or self.pasted.unreplaced) and status == exit_codes.OK:
            return exit_codes.BAD_INPUT
        return status


def upsample_photos(generator: Generator, photos_spec, output_dir: os.PathLike,
                    search_config: Optional[SearchConfig] = None,
                    options: Optional[BatchOptions] = None, *, upscale: int = 1,
                    rules: Optional[FaceRules] = None,
                    checkpoint_manifest: Optional[dict] = None, lr_size: int = 0,
                    num_landmarks: int = 5, detect_options: Optional[dict] = None,
                    log: Optional[Callable[[str], None]] = None,
                    on_progress: Optional[Callable] = None) -> PhotosSummary:
    """Photos in, photos ``upscale`` times larger out: the three steps of the module doc, in
    ``output_dir``.

    Args:
      generator: the :class:`~pulse_jax.Generator` (with a Gaussian fit).
      photos_spec: photos (:func:`pulse_jax.inputs.discover_inputs`: a folder, a glob, a
        list file).
      search_config, options: the search and the batch options of step 2
        (:func:`pulse_jax.batch.run_batch`; None: their defaults).
      upscale: the output photos' scale (1: the input's size).
      rules: which faces are replaced and their LR sides
        (:class:`~pulse_jax.align.rules.FaceRules`; None: the size rule, confirmed faces).
      checkpoint_manifest: the generator's checkpoint manifest, whose stored framing
        template the crops follow (None or none stored: FFHQ's).
      lr_size: one LR side for every face instead of the size rule (0: the rule; kept for
        scripts of the fixed-size era: ``rules=FaceRules(lr_size=N)`` is the same).
      num_landmarks: 5 (licence-clean) or 68 (the reference's recipe, non-commercial).
      detect_options: :func:`pulse_jax.align.detect.detect_faces`'s (``min_face_px``,
        ``min_score``, ...).
      log: told every step's messages and summaries (default ``logging.info``).
      on_progress: told every :class:`pulse_jax.search.Progress` of step 2
        (:func:`pulse_jax.batch.run_batch`'s).

    Returns:
      a :class:`PhotosSummary` (``exit_status()`` is the command's; a run where no face
      could be replaced writes its error records and returns one with nothing searched).
      Raises as the steps do (``ImageError``: no photos; ImportError without the align
      extra; ``OutputBusyError``: another run writes into ``output_dir``), ValueError for a
      bad ``upscale``.
    """
    from pulse_jax import batch
    from pulse_jax.search import SearchConfig
    if not isinstance(upscale, int) or upscale < 1:
        raise ValueError(f"--upscale must be an integer >= 1, got {upscale!r}")
    say = log or _logger.info
    rules = rules or FaceRules()
    if lr_size:
        rules = dataclasses.replace(rules, lr_size=int(lr_size))
    aligned = align_photos(photos_spec, output_dir, generator.resolution, rules,
                           checkpoint_manifest, num_landmarks, say,
                           detect_options=detect_options)
    say(aligned.format())
    if aligned.faces:
        lr_dir = pathlib.Path(output_dir) / ALIGNED / folder.LR_FOLDER
        summary = batch.run_batch(generator, str(lr_dir), output_dir,
                                  search_config or SearchConfig(), options, log=say,
                                  on_progress=on_progress)
        say(summary.format())
    else:
        say(f"--align: no face to replace in {photos_spec}: nothing to search (the photos' "
            "manifest says why for each)")
        summary = batch.Summary(output_dir=str(output_dir))
    pasted = paste_results(output_dir, upscale, say)
    say(pasted.format())
    return PhotosSummary(aligned, summary, pasted)
