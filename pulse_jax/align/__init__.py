"""Photos in, aligned faces out, and back: face detection, framing, crop and paste-back.

PULSE only works on faces framed the way its generator's training data was. This package
finds every face in a photo down to about 20 px (dlib's HOG detector, each detection checked
by dlib's CNN detector, and 5- or 68-point landmarks, from the ``align`` extra:
``pip install -e '.[align]'``; the rest of pulse-jax does not need it), chooses the faces to
replace and each one's LR size, crops it with NVIDIA's FFHQ recipe or a generator's own
landmark template, keeps the crop's quad so the crop can be inverted, and draws the restored
face back into its photo, made larger if asked.

Modules: ``landmarks`` (dlib, lazily imported; licences), ``detect`` (the detector's passes
and check), ``rules`` (which faces, what LR size), ``quad`` (crop quads and their maps),
``crop`` (NVIDIA's recipe), ``framing`` (templates: FFHQ, points), ``photos`` (reading
photos), ``aligner`` (one photo), ``paste`` (paste-back), ``compose`` (the output photo,
its downscaling check and its manifest), ``folder`` (a folder of photos, with a manifest),
``pipeline`` (photos in, photos out: :func:`upsample_photos` aligns, searches and pastes
back for ``pulse-jax upsample --align``;
``align_for_checkpoint`` is ``pulse-jax align``), ``template`` (a template from a
generator's samples; ``pulse-jax template``). The flags of those commands
are parsed in :mod:`pulse_jax.cli`. docs/align.md has the recipe, the templates, the
licences and measured figures.

Importing this package does not import dlib.
"""

from pulse_jax.align.aligner import AlignedFace, Refused, align_photo
from pulse_jax.align.compose import compose_photo, consistency
from pulse_jax.align.detect import Face, detect_faces
from pulse_jax.align.errors import AlignError
from pulse_jax.align.framing import FFHQ, Template, face_quad, template_from_manifest
from pulse_jax.align.paste import paste_back
from pulse_jax.align.photos import load_photo
from pulse_jax.align.pipeline import PhotosSummary, upsample_photos
from pulse_jax.align.rules import FaceRules

__all__ = ["FFHQ", "AlignError", "AlignedFace", "Face", "FaceRules", "PhotosSummary", "Refused",
           "Template", "align_photo", "compose_photo", "consistency", "detect_faces",
           "face_quad", "load_photo", "paste_back", "template_from_manifest",
           "upsample_photos"]
