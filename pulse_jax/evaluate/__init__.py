"""How far to trust a result: identity, image quality and per-group figures of PULSE
against ground truth, and the report they make.

* :func:`identity_distance` (:mod:`.identity`): dlib's face-recognition distance between
  the faces of two images, offline (the align extra's face-recognition-models);
* :func:`run` (:mod:`.runner`, ``pulse-jax evaluate``): ground-truth faces in; observations,
  PULSE, baselines, ``metrics.jsonl``, ``summary.json`` and ``report.md`` out;
* :mod:`.labels` (UTKFace names, CSV labels), :mod:`.measures` (one face's figures),
  :mod:`.summary` (per-group figures with bootstrap intervals), :mod:`.report` (the plots).

docs/evaluate.md says what each figure means and what it does not.
"""

from pulse_jax.evaluate.identity import (SAME_IDENTITY, FaceNotFoundError, face_descriptor,
                                         identity_distance)
from pulse_jax.evaluate.labels import labeller, read_labels_csv, utkface_labels
from pulse_jax.evaluate.runner import EvaluateOptions, observe, run
from pulse_jax.evaluate.summary import bootstrap_interval, summarize

__all__ = ["SAME_IDENTITY", "EvaluateOptions", "FaceNotFoundError", "bootstrap_interval",
           "face_descriptor", "identity_distance", "labeller", "observe", "read_labels_csv",
           "run", "summarize", "utkface_labels"]
