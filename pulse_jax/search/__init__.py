"""The PULSE search: find latents whose generated image downscales to each input face.

For every face, ``restarts`` independent random starts run in parallel (one batch of
``faces x restarts`` through the generator). Every restart keeps its best iterate (lowest
total loss, as the reference's ``best_im``); each face's result is its best restart (see
:class:`SearchConfig` ``select``). Unlike the reference (docs/reference.md, "Pitfalls") the
returned image is the best iterate's, success is decided per face, and a result is always
returned with its l2 and success flag; ``return_image="last"`` reproduces the reference's
last-iterate image.

How steps run (``SearchConfig.loop``, ``upconv``; docs/performance.md): the generator's
weight arithmetic is done once per call; on CPU a Python loop calls one compiled step that
donates its state, and the upsampling convolutions run in their sub-pixel form; GPU/TPU
use a ``fori_loop`` per progress chunk. Same function either way, up to float rounding.

Faces are searched in chunks of ``batch_size`` (per device), the last one padded:
:func:`upsample_chunks` yields each chunk's :class:`Result` as soon as it is done (the
batch runner writes faces from it), :func:`upsample` returns them all at once.

What is matched: by default the reference's bicubic downscale of the generated face
against the LR input (``degradation=None`` is the operator
``"downscale(factor=f,kernel=bicubic)"``, bit for bit); ``degradation=`` takes any forward
model of :mod:`pulse_jax.degrade` (blur, other downscales, gray, masks, a noise model; one
per face if need be), and then the input is its observation and ``l2``/``success`` are
measured there (docs/degradations.md).

Randomness: restart ``r`` of the face with index ``i`` in the request (or ``face_ids[i]``)
draws from ``fold_in(fold_in(PRNGKey(seed), face_id), r)``, so duplicates differ and a
face's start does not depend on the other faces. Bitwise equality of whole runs also
needs the same batch shape (the search is chaotic and a different batch size changes
float32 reduction order); ``batch_size`` pads every chunk of faces to a fixed shape.

Modules, down the floors: ``config`` (:class:`SearchConfig`, :class:`NoisePlan`, the option
names), ``checks`` (every check of what the search is asked), ``steps`` (the pure pieces:
random starts, one step, the loss and its gradient, the final choice), ``stages`` (those
compiled for a device layout: jit, ``shard_map``, the host or device loop), ``run``
(:func:`upsample`, :func:`upsample_chunks`, :class:`Result`, :class:`Progress`).
"""

from pulse_jax.search.checks import (OVERSHOOT, check_generator, check_lr_images,
                                     check_observations, faces_per_call, resolve_degradation)
from pulse_jax.search.config import (EPILOGUES, LOOPS, NOISE_TYPES, RETURN_IMAGES, SELECT_RULES,
                                     UPCONVS, NoisePlan, SearchConfig, parse_bad_noise_layers)
from pulse_jax.search.run import Progress, Result, upsample, upsample_chunks
from pulse_jax.search.steps import gaussianize, loss_and_grad, restart_keys

__all__ = [
    "EPILOGUES", "LOOPS", "NOISE_TYPES", "NoisePlan", "OVERSHOOT", "Progress", "RETURN_IMAGES", "Result",
    "SELECT_RULES", "SearchConfig", "UPCONVS", "check_generator", "check_lr_images",
    "check_observations", "faces_per_call", "gaussianize", "loss_and_grad",
    "parse_bad_noise_layers", "resolve_degradation", "restart_keys", "upsample",
    "upsample_chunks",
]
