r"""The ``pulse-jax upsample`` config: the reference's settings, every flag of PULSE's
``run.py`` with its default (docs/reference.md, "run.py flags and defaults"), and ours.

It is an ``ml_collections`` config (this file is the default ``--config`` of the command;
``experiments/configs/*.py`` start from it; ``pulse_jax.run_config``, its old name, still
imports it). Its ``search`` fields are :class:`pulse_jax.search.SearchConfig`'s and its
top-level batch fields are :class:`pulse_jax.batch.BatchOptions`', generated from those
dataclasses with their defaults, so there is no second copy; :func:`split` turns a config
back into the two, which validate themselves. Run (the README's main job: 32x32 faces in
``input/`` -> 1024x1024 in ``runs/``)::

  pulse-jax upsample --input_dir=input --output_dir=runs

Override any field with ``--config.FIELD=VALUE`` (``--config.search.steps=200``,
``--config.search.restarts=4``) and print the resolved config with ``--print_config``.

The reference's flags and where they live here (same defaults):

=========================== ===================================================================
run.py flag                 here
=========================== ===================================================================
-input_dir input            ``input_dir`` "input": a folder (``*.png``, ``*.jpg``, ``*.jpeg``,
                            sorted by name), a glob, or a list file (``@faces.txt``)
-output_dir runs            ``output_dir`` "runs"
-cache_dir cache            ``cache_dir`` "": where converted checkpoints are looked up:
                            ``$PULSE_JAX_HOME`` or ``~/.cache/pulse_jax`` when empty. The
                            reference's cache held the downloaded torch files; ours holds the
                            converted checkpoint ``{cache_dir}/checkpoints/ffhq1024``.
-duplicates 1               ``duplicates`` 1: independent results per input, written
                            ``{stem}_{k}.png`` (k = 1..d) as in the reference, each with its own
                            face id and therefore its own random start. (The reference's
                            duplicates all started from the same point when seeded, a bug,
                            docs/reference.md, "Seeding and random draws".) Not to be
                            confused with ``search.restarts``: restarts run in parallel for
                            one output and the best one is kept.
-batch_size 1               ``batch_size`` 1: faces per device per search call. It sets the
                            per-device batch shape, which results depend on bitwise; the
                            device count never changes it. (Success is judged per face, unlike
                            the reference's batch-summed test, docs/reference.md, "End of a
                            run and success".)
-seed None                  ``seed`` 0: always an integer; every face's start comes from
                            (seed, face id, restart). The reference's None/0 meant "unseeded";
                            for a different draw pick another integer.
-loss_str 100*L2+0.05*GEOCROSS  ``search.loss_str``
-eps 2e-3                   ``search.eps``
-noise_type trainable       ``search.noise_type``
-num_trainable_noise_layers 5   ``search.num_trainable_noise_layers``
-tile_latent False          ``search.tile_latent``
-bad_noise_layers 17        ``search.bad_noise_layers`` "last" (= "17" at 1024; "last" also
                            means the last layer of a smaller generator). '.'-separated.
-opt_name adam              ``search.opt_name``
-learning_rate 0.4          ``search.learning_rate``
-steps 100                  ``search.steps``
-lr_schedule linear1cycledrop  ``search.lr_schedule``
-save_intermediate False    ``save_intermediate``: frames after every ``search.chunk_steps``
                            steps under ``{name}/HR`` and ``{name}/LR`` (set chunk_steps=1 for
                            the reference's every-step frames)
=========================== ===================================================================

Ours: ``checkpoint`` (a folder written by ``pulse_jax.save_generator``/``pulse-jax convert``;
"" = the cache), ``search.restarts`` and the other ``SearchConfig`` fields, the output
options (``save_lr``, ``save_contact_sheet``, ``write_failures``), the device layout
(``devices``: 0 = all local devices), multi-host settings (``distributed`` and friends, or
``PULSE_JAX_DISTRIBUTED=1`` in the environment), and ``progress``.

``degradation`` (default "": the reference's bicubic downscale, factor from each input's
size) is the forward model the search matches, in the grammar of
:func:`pulse_jax.degrade.parse` (docs/degradations.md): operators joined by ``|``, applied left
to right to the HR image::

  --config.degradation="blur(sigma=1.5)|downscale(factor=8,kernel=bicubic)"
  --config.degradation="downscale(factor=4,kernel=area)|gray(weights=709)|noise(sigma=0.02)"
  --config.degradation="mask()"        # inpainting: {name}_mask.png beside each input

A bad string is a configuration error (exit status 2) naming the problem.
"""

from __future__ import annotations

import dataclasses

import ml_collections

from pulse_jax.batch import BatchOptions
from pulse_jax.search import SearchConfig

__all__ = ["get_config", "split"]

# Fields of the command itself (the rest are BatchOptions' and SearchConfig's).
_OWN = dict(
    input_dir="input",        # a folder, a glob or a list file (@faces.txt)
    output_dir="runs",
    checkpoint="",            # "" = FFHQ in the cache, else the shipped model; a folder; ...
    cache_dir="",             # "" = $PULSE_JAX_HOME or ~/.cache/pulse_jax
    distributed=False,        # call jax.distributed.initialize (or PULSE_JAX_DISTRIBUTED=1)
    coordinator_address="",   # "" = auto-detect (TPU pods, SLURM, ...)
    num_processes=0,          # 0 = auto-detect
    process_id=-1,            # -1 = auto-detect
    align=False,              # input_dir holds photos: align, upsample, paste back
    align_upscale=1,          # output photos this many times larger (1: the input's size)
    align_lr_size=0,          # one LR side for every face; 0 = each face's own (the size rule)
    align_replace_large_faces=False,  # also replace faces already at the generator's size
    align_faces="",           # face indices to replace, e.g. "0,2" ("" = every confirmed face)
    align_verify=True,        # replace only detections the CNN detector confirms as faces
    align_min_score=0.0,      # the HOG detector's threshold (dlib's 0)
    align_min_face_px=20.0,   # the smallest face box looked for (0: the reference's one pass)
    align_landmarks=5,        # 5 (licence-clean, default) or 68 (the reference's recipe)
)


def get_config() -> ml_collections.ConfigDict:
    """The default config (the reference's defaults where it has the setting)."""
    config = ml_collections.ConfigDict(dict(_OWN))
    for f in dataclasses.fields(BatchOptions):
        config[f.name] = f.default
    config.search = ml_collections.ConfigDict(dataclasses.asdict(SearchConfig()))
    # 0 = the generator's layer count (SearchConfig's None, which an override cannot set).
    config.search.num_latent_rows = 0
    return config


def split(config: ml_collections.ConfigDict) -> tuple[SearchConfig, BatchOptions]:
    """The :class:`SearchConfig` and :class:`BatchOptions` that ``config`` describes
    (ValueError or TypeError from their own validation if a value is bad)."""
    search = dict(config.search)
    search["num_latent_rows"] = search.get("num_latent_rows") or None
    options = {f.name: config[f.name] for f in dataclasses.fields(BatchOptions)}
    return SearchConfig(**search), BatchOptions(**options)
