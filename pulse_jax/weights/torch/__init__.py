"""PyTorch's file formats, read without PyTorch: :func:`load_torch_file` (in :mod:`.files`).

One job per module, each importing only the ones below it:

* :mod:`.files`: tells the formats apart by their first bytes and reads either;
* :mod:`.zip` and :mod:`.legacy`: the zip archive of ``torch.save`` (PyTorch >= 1.6) and the
  older single stream;
* :mod:`.unpickler`: the restricted unpickler both use (its allow-list and stand-ins);
* :mod:`.storage`: storages and the tensor views of them, made into numpy arrays (shared with
  :mod:`..ada_pickle`, whose pickles embed torch tensors).
"""

from __future__ import annotations

from pulse_jax.weights.torch.files import load_torch_file

__all__ = ["load_torch_file"]
