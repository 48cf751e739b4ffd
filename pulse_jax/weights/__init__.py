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
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import jax.numpy as jnp
import numpy as np

from pulse_jax.generator import Generator
from pulse_jax.weights.errors import CheckpointFormatError
from pulse_jax.weights.checkpoint import CheckpointError, load_generator, read_manifest, save_generator
from pulse_jax.weights.gaussian_fit import compute_gaussian_fit
from pulse_jax.weights.fetch import ffhq_generator
from pulse_jax.weights.locate import (DEFAULT_CHECKPOINT_ENV, cache_home, default_checkpoint_path,
                                      ffhq_checkpoint, how_to_get_weights, resolve_checkpoint)
from pulse_jax.weights.pulse_state_dict import (StateDictError, infer_config, mapping_params,
                                                state_dict_shapes, synthesis_params)

__all__ = [
    "CheckpointError", "StateDictError", "cache_home", "compute_gaussian_fit",
    "default_checkpoint_path", "default_generator", "ffhq_checkpoint", "ffhq_generator",
    "from_pulse_state_dicts",
    "how_to_get_weights", "import_nvidia", "import_pulse", "infer_config", "load_generator",
    "nvidia_format", "read_manifest", "resolve_checkpoint", "save_generator",
    "state_dict_shapes", "source_record",
]


def _gaussian_fit(fit: Optional[Mapping[str, Any]], dlatent_size: int) -> Optional[dict]:
    if fit is None:
        return None
    if not isinstance(fit, Mapping) or set(fit) != {"mean", "std"}:
        keys = sorted(fit) if isinstance(fit, Mapping) else type(fit).__name__
        raise StateDictError(f"gaussian_fit must be a dict with keys 'mean' and 'std', found {keys}")
    out = {}
    for k in ("mean", "std"):
        a = np.asarray(fit[k])
        if a.shape != (dlatent_size,):
            raise StateDictError(f"gaussian_fit key {k!r}: expected shape ({dlatent_size},), "
                                 f"found {a.shape}")
        out[k] = jnp.asarray(a, jnp.float32)
    return out


def from_pulse_state_dicts(synthesis: Mapping[str, Any], mapping: Optional[Mapping[str, Any]] = None,
                           gaussian_fit: Optional[Mapping[str, Any]] = None) -> Generator:
    """Build a :class:`Generator` from the reference's state dicts (numpy arrays).

    Args:
      synthesis: ``G_synthesis.state_dict()`` as ``{key: array}`` (e.g. ``blocks.4x4.const``).
      mapping: ``G_mapping.state_dict()`` (``dense0.weight`` ...), optional: PULSE's search
        never runs the mapping network; it is needed only to compute a Gaussian fit.
      gaussian_fit: ``{"mean": [D], "std": [D]}``, optional.

    The config (resolution, widths, latent size) is inferred from the shapes. Missing or
    unexpected keys and wrong shapes raise :class:`StateDictError` naming the key and the
    expected and found shapes.
    """
    config = infer_config(synthesis, mapping)
    params = {"synthesis": synthesis_params(config, synthesis),
              "mapping": None if mapping is None else mapping_params(config, mapping)}
    return Generator(config=config, params=params,
                     gaussian_fit=_gaussian_fit(gaussian_fit, config.dlatent_size))


def source_record(path: os.PathLike, role: str) -> dict:
    """``{"role", "path", "sha256", "bytes"}`` of a source file, for checkpoint manifests."""
    from pulse_jax.files import sha256_file
    return {"role": role, "path": os.path.abspath(path), "sha256": sha256_file(path),
            "bytes": os.path.getsize(path)}


def import_pulse(synthesis_path: os.PathLike, mapping_path: Optional[os.PathLike] = None,
                 gaussian_fit_path: Optional[os.PathLike] = None) -> Generator:
    """Read PULSE's ``synthesis.pt`` (and optionally ``mapping.pt``, ``gaussian_fit.pt``).

    Both PyTorch formats are read (zip archive and legacy, storages tagged ``cuda:0``
    included) without PyTorch; a pickle referring to anything but tensors and dicts is
    refused before it runs.
    """
    from pulse_jax.weights.torch_files import load_torch_file

    def state_dict(path, what):
        obj = load_torch_file(path)
        if not isinstance(obj, Mapping):
            raise StateDictError(f"{path}: expected a {what} state dict, found {type(obj).__name__}")
        return obj

    syn = state_dict(synthesis_path, "synthesis")
    mapping = None if mapping_path is None else state_dict(mapping_path, "mapping")
    fit = None if gaussian_fit_path is None else state_dict(gaussian_fit_path, "gaussian fit")
    return from_pulse_state_dicts(syn, mapping, fit)


def nvidia_format(pkl_path: os.PathLike) -> str:
    """Which kind of NVIDIA pickle ``pkl_path`` is, from the first network module its stream
    names: "stylegan2-ada" (PyTorch ``torch_utils.persistence`` networks) or "tensorflow"
    (``dnnlib.tflib`` Networks: StyleGAN v1 or StyleGAN2). The opcodes are only parsed
    (``pickletools.genops``), never executed, and parsing stops at the first match."""
    import pickletools
    from pulse_jax.weights.safe_pickle import checkpoint_errors, open_checkpoint
    spath = os.fspath(pkl_path)
    with open_checkpoint(spath) as fh, checkpoint_errors(spath, "corrupt or truncated pickle"):
        if fh.read(1) != b"\x80":
            raise CheckpointFormatError(f"{spath}: not a pickle file (NVIDIA's networks are "
                                        "pickles; see checkpoints/README.md)")
        fh.seek(0)
        for _, arg, _ in pickletools.genops(fh):
            if not isinstance(arg, str):
                continue
            if arg.startswith("torch_utils.persistence"):
                return "stylegan2-ada"
            if arg.startswith("dnnlib.tflib.network"):
                return "tensorflow"
    raise CheckpointFormatError(f"{spath}: not an NVIDIA StyleGAN network pickle (it names "
                                "neither dnnlib.tflib.network nor torch_utils.persistence)")


def _stylegan2_generator(pkl_path: os.PathLike, init_kwargs: Mapping[str, Any],
                         state_dict: Mapping[str, Any]) -> Generator:
    from pulse_jax import stylegan2
    try:
        config = stylegan2.StyleGAN2Config.from_init_kwargs(init_kwargs)
        params = stylegan2.params_from_state_dict(config, state_dict)
    except ValueError as e:
        raise CheckpointFormatError(f"{os.fspath(pkl_path)}: {e}") from None
    return Generator(config=config, params=params)


def import_nvidia(pkl_path: os.PathLike, network: Optional[str] = None) -> Generator:
    """Read one of NVIDIA's generator pickles, whichever kind (:func:`nvidia_format`).

    * StyleGAN v1 TensorFlow (``karras2019stylegan-ffhq-1024x1024.pkl``): a StyleGAN v1
      generator; ``network`` picks one of the pickled ``(G, D, Gs)`` (default ``Gs``, the
      moving average that NVIDIA and PULSE use).
    * StyleGAN2 TensorFlow (``stylegan2-ffhq-config-f.pkl``): a StyleGAN2 generator, the
      variables mapped by name as the official ``legacy.py`` maps them (``network``: ``Gs``
      by default).
    * StyleGAN2-ADA PyTorch: a StyleGAN2 generator; ``network`` is ``G_ema`` (default) or
      ``G``. The architecture comes from the pickled constructor arguments; the embedded
      Python source is never run.

    No TensorFlow or PyTorch is needed and no code from the pickle runs. The result has
    mapping weights but no Gaussian fit: compute one with :func:`compute_gaussian_fit`
    (``pulse-jax convert`` does) or, for StyleGAN v1 FFHQ, load PULSE's ``gaussian_fit.pt``.
    """
    kind = nvidia_format(pkl_path)
    if kind == "stylegan2-ada":
        from pulse_jax.weights import ada_pickle
        net = ada_pickle.load_ada_pickle(pkl_path, network=network or "G_ema")
        return _stylegan2_generator(pkl_path, net["init_kwargs"], net["state_dict"])
    from pulse_jax.weights import nvidia_pickle, tf_stylegan2
    nv = nvidia_pickle.load_nvidia_pickle(pkl_path, network=network or "Gs")
    if tf_stylegan2.is_stylegan2(nv["synthesis"]):
        try:
            kwargs, sd = tf_stylegan2.state_dict(nv)
        except ValueError as e:
            raise CheckpointFormatError(f"{os.fspath(pkl_path)}: {e}") from None
        return _stylegan2_generator(pkl_path, kwargs, sd)
    syn, mapping = nvidia_pickle.nvidia_to_pulse_state_dicts(nv)
    return from_pulse_state_dicts(syn, mapping)


def default_generator() -> Generator:
    """The small face model shipped with pulse-jax: works offline, no download.

    A 64x64 StyleGAN v1 trained by us on UTKFace (non-commercial research data, so the model
    is for non-commercial research use only; see ``checkpoints/README.md``). Its quality is
    far below NVIDIA's FFHQ 1024 model, which stays the recommended choice.
    """
    path = default_checkpoint_path()
    if not (path / "manifest.json").is_file():
        raise CheckpointError(
            f"the default model is not at {path}: pulse-jax ships it as package data in "
            f"pulse_jax/checkpoints/utkface64 (reinstall pulse-jax), or set "
            f"${DEFAULT_CHECKPOINT_ENV} to its folder")
    return load_generator(path)
