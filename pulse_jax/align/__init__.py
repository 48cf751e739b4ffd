"""Photos in, aligned faces out, and back: face detection, framing, crop and paste-back.

PULSE only works on faces framed the way its generator's training data was. This package
finds every face in a photo (dlib's HOG detector and 5- or 68-point landmarks, from the
``align`` extra: ``pip install -e '.[align]'``; the rest of pulse-jax does not need it),
crops it with NVIDIA's FFHQ recipe or a generator's own landmark template, keeps the crop's
quad so the crop can be inverted, and pastes a restored face back into its photo.

Modules: ``landmarks`` (dlib, lazily imported; licences), ``quad`` (crop quads and their
maps), ``crop`` (NVIDIA's recipe), ``framing`` (templates: FFHQ, points), ``photos``
(reading photos), ``aligner`` (one photo), ``paste`` (paste-back), ``folder`` (a folder of
photos, with a manifest), ``pipeline`` (photos in, photos out: :func:`upsample_photos`
aligns, searches and pastes back for ``pulse-jax upsample --align``;
``align_for_checkpoint`` is ``pulse-jax align``), ``template`` (a template from a
generator's samples; ``pulse-jax template``). The flags of those commands
are parsed in :mod:`pulse_jax.cli`. docs/align.md has the recipe, the templates, the
licences and measured figures.

Importing this package does not import dlib.
"""

from pulse_jax.align.aligner import AlignedFace, Refused, align_photo
from pulse_jax.align.errors import AlignError
from pulse_jax.align.framing import FFHQ, Template, face_quad, template_from_manifest
from pulse_jax.align.paste import paste_back
from pulse_jax.align.photos import load_photo
from pulse_jax.align.pipeline import PhotosSummary, upsample_photos

__all__ = ["FFHQ", "AlignError", "AlignedFace", "PhotosSummary", "Refused", "Template",
           "align_photo", "face_quad", "load_photo", "paste_back", "template_from_manifest",
           "upsample_photos"]
