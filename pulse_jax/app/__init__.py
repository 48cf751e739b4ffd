"""The web app (``pulse-jax app``, the ``app`` extra): a local Gradio page over the library,
for people who have a photo and a browser.

::

  from pulse_jax import app
  a = app.launch(app.build(), port=7860, block=False)   # http://127.0.0.1:7860/
  a.close()

A tiny face goes to :func:`pulse_jax.batch.run_batch`, a photo to
:func:`pulse_jax.align.upsample_photos` (:data:`handle.ROUTE_RULE` decides); the page shows
the output, every face's restarts with their l2, its variability map and manifest record,
and offers everything as a zip. The same function is the API ``/upsample`` (docs/app.md).

Modules, down the floors: ``uploads`` (limits, reading an upload safely), ``models`` (the
shipped and converted checkpoints), ``work`` (per-request folders, cleaned up), ``handle``
(one request as plain functions, no Gradio), ``layout`` (the page; imports Gradio),
``server`` (:func:`build`, :func:`launch`: Gradio's settings). Only ``layout`` and
``server`` import Gradio, and only when called: the rest of pulse-jax never does.
"""

from pulse_jax.app.handle import FACE, PHOTO, ROUTE_RULE, Outcome, Settings, route, upsample_upload
from pulse_jax.app.models import Models, available_models
from pulse_jax.app.server import App, build, launch
from pulse_jax.app.uploads import Limits, Upload, UploadError, read_upload
from pulse_jax.app.work import WorkFolders

__all__ = ["App", "FACE", "Limits", "Models", "Outcome", "PHOTO", "ROUTE_RULE", "Settings",
           "Upload", "UploadError", "WorkFolders", "available_models", "build", "launch",
           "read_upload", "route", "upsample_upload"]
