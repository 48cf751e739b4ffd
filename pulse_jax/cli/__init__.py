r"""The ``pulse-jax`` command: ``upsample``, ``align``, ``evaluate``, ``convert``, ``info``,
``merge``, ``template`` and ``app``.

::

  pulse-jax upsample --input_dir=input --output_dir=runs [--checkpoint=DIR]
                     [--config=experiments/configs/fast.py] [--config.search.steps=200 ...]
                     [--seed=N] [--align] [--print_config]
  pulse-jax align --input_dir=photos --output_dir=aligned [--lr_size=32] [--checkpoint=DIR]
                  [--landmarks=5|68] [--template=auto|ffhq|checkpoint]
  pulse-jax evaluate --truth_dir=faces --output_dir=eval [--labels=utkface|FILE.csv]
                     [--checkpoint=DIR] [--config.search.restarts=4 ...]
  pulse-jax convert (--synthesis=synthesis.pt [--mapping=mapping.pt] | --nvidia=FILE.pkl)
                    [--gaussian_fit=gaussian_fit.pt] [--output=DIR]
  pulse-jax info [DIR] [--arrays]
  pulse-jax merge OUTPUT_DIR
  pulse-jax template [--checkpoint=DIR] [--samples=200] [--write]
  pulse-jax app [--host=127.0.0.1] [--port=7860] [--checkpoint=DIR]

``upsample`` runs :func:`pulse_jax.batch.run_batch` with the config of
:mod:`pulse_jax.cli.config` (``--config.FIELD=VALUE`` overrides a field; ``--input_dir``,
``--output_dir``, ``--checkpoint`` and ``--seed`` are shorthands that win over them). The
weights are ``--checkpoint`` (:func:`pulse_jax.weights.resolve_checkpoint`: a folder,
``ffhq1024`` in the cache, ``default`` for the shipped model, or empty for the first of the
two that exists). With ``--align`` the inputs are photos: :func:`pulse_jax.align.upsample_photos`
aligns their faces, searches them and pastes the results back into the photos.
``--config.distributed=True`` (or ``PULSE_JAX_DISTRIBUTED=1``) starts ``jax.distributed``
first (:mod:`pulse_jax.batch.multihost`): every process runs the same command and process 0 merges
the manifests and reports on all faces.

``align`` (:func:`pulse_jax.align.pipeline.align_for_checkpoint`) detects every face in every
photo, crops it the way the generator's training faces were framed and writes the crop, its
LR version (``lr/``, ready for ``upsample``) and a manifest line with the transform that
``paste_back`` inverts. ``evaluate`` (:func:`pulse_jax.evaluate.run`) makes observations of
ground-truth faces, searches them and measures identity, quality and their spread per group
against bicubic and nearest baselines (``metrics.jsonl``, ``summary.json``, ``report.md``). ``convert`` imports PULSE's PyTorch files or NVIDIA's pickle (no
PyTorch or TensorFlow needed, no code from the files run) into a checkpoint folder, by
default the cache's ``ffhq1024``; without a Gaussian fit file the fit is computed from
``--fit_samples`` mapping samples. ``info`` prints a checkpoint's manifest. ``merge`` folds
the manifest parts of a multi-process run into ``manifest.jsonl`` (idempotent). ``template``
(until now ``python -m pulse_jax.align.template``) measures a generator's framing on faces
it draws and can store it in its checkpoint for ``align``. ``app`` serves the local web app
(:mod:`pulse_jax.app`, the ``app`` extra) until interrupted.

Modules: ``main`` (the dispatcher, ``--version``), one per command (``upsample_command``,
``align_command``, ``evaluate_command``, ``convert_command``, ``info_command``,
``merge_command``, ``template_command`` and ``app_command``), ``config`` (the ``upsample`` config, which
``evaluate`` reads too), ``common`` (:class:`UsageError`, flag parsing). A command only parses
its flags and calls the library.

Exit status (:mod:`pulse_jax.exit_codes`): 0 every face within eps; 1 a bad input or a
failed search (named on stderr and in the manifest; the other faces are done); 2 a usage,
config or weights problem (nothing was run; a message, no traceback); 3 some face missed
eps; 4 the output folder is in use by another run (named; nothing was run); 130
interrupted (rerun the same command to resume).
"""

from pulse_jax.cli.common import UsageError
from pulse_jax.cli.main import main, run, version
from pulse_jax.cli.upsample_command import upsample

__all__ = ["UsageError", "main", "run", "upsample", "version"]
