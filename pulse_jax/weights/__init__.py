"""Weights: import the reference's files safely, convert them, save/load our checkpoint.

Two routes lead to a :class:`pulse_jax.Generator`:

* PULSE's PyTorch files (``synthesis.pt``, ``mapping.pt``, ``gaussian_fit.pt``):
  :func:`import_pulse`, or :func:`from_pulse_state_dicts` for in-memory state dicts;
* NVIDIA's pickles: :func:`import_nvidia` tells StyleGAN v1 TensorFlow pickles
  (``karras2019stylegan-ffhq-1024x1024.pkl``) from StyleGAN2-ADA PyTorch pickles
  (``ffhq.pkl``, ``metfaces.pkl``, ``network-snapshot-*.pkl``) and returns a StyleGAN v1
  or StyleGAN2 generator.

Neither needs PyTorch or TensorFlow, and neither runs code from the files: their pickles
are read by restricted unpicklers that only rebuild arrays. Save the result once with
:func:`save_generator` and load it quickly with :func:`load_generator`.

This file only gathers the public names. Where each lives:

* :mod:`.importers`: the two routes above, :func:`read_gaussian_fit`, :func:`default_generator`;
* :mod:`.torch`, :mod:`.nvidia_pickle`, :mod:`.ada_pickle`, :mod:`.tf_stylegan2` and
  :mod:`.safe_pickle`: the file readers; :mod:`.pulse_state_dict`: PULSE's state-dict layout;
* :mod:`.checkpoint`: our own checkpoint format; :mod:`.locate`: where checkpoints are found;
* :mod:`.gaussian_fit`: computing a fit; :mod:`.fetch`: downloading NVIDIA's FFHQ model.
"""

from __future__ import annotations

from pulse_jax.weights.checkpoint import (CheckpointError, load_generator, read_manifest,
                                          save_generator)
from pulse_jax.weights.errors import CheckpointFormatError
from pulse_jax.weights.fetch import ffhq_generator
from pulse_jax.weights.gaussian_fit import compute_gaussian_fit
from pulse_jax.weights.importers import (default_generator, from_pulse_state_dicts, import_nvidia,
                                         import_pulse, nvidia_format, read_gaussian_fit,
                                         source_record)
from pulse_jax.weights.locate import (DEFAULT_CHECKPOINT_ENV, cache_home, default_checkpoint_path,
                                      ffhq_checkpoint, how_to_get_weights, resolve_checkpoint)
from pulse_jax.weights.pulse_state_dict import (StateDictError, infer_config, mapping_params,
                                                state_dict_shapes, synthesis_params)

# CheckpointFormatError, DEFAULT_CHECKPOINT_ENV, mapping_params and synthesis_params are
# importable from here too, outside __all__, as they always were.
__all__ = [
    "CheckpointError", "StateDictError", "cache_home", "compute_gaussian_fit",
    "default_checkpoint_path", "default_generator", "ffhq_checkpoint", "ffhq_generator",
    "from_pulse_state_dicts",
    "how_to_get_weights", "import_nvidia", "import_pulse", "infer_config", "load_generator",
    "nvidia_format", "read_gaussian_fit", "read_manifest", "resolve_checkpoint", "save_generator",
    "state_dict_shapes", "source_record",
]
