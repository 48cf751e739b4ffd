"""The importers: the reference's files in, a :class:`~pulse_jax.Generator` out.

* PULSE's PyTorch files: :func:`import_pulse` reads ``synthesis.pt`` (and optionally
  ``mapping.pt``, ``gaussian_fit.pt``); :func:`from_pulse_state_dicts` builds the generator from
  state dicts already in memory; :func:`read_gaussian_fit` reads and checks a fit file alone.
* NVIDIA's pickles: :func:`nvidia_format` tells their kinds apart from the opcodes alone and
  :func:`import_nvidia` reads whichever it is.
* :func:`default_generator`: the small model shipped as package data.
* :func:`source_record`: what a checkpoint manifest says about each file it was converted from.

Every file is read by a restricted unpickler (:mod:`.torch`, :mod:`.nvidia_pickle`,
:mod:`.ada_pickle`), so none of these needs PyTorch or TensorFlow and none runs code from a
file. Bad content raises :class:`StateDictError` (the state dicts and the Gaussian fit) or
:class:`~.errors.CheckpointFormatError` (a damaged or unsupported file), both ``ValueError``.
"""

from __future__ import annotations

import os
import pickletools
from typing import Any, Mapping, Optional

import jax.numpy as jnp
import numpy as np

from pulse_jax import files, stylegan2
from pulse_jax.generator import Generator

from .ada_pickle import load_ada_pickle
from .checkpoint import CheckpointError, load_generator
from .errors import CheckpointFormatError
from .locate import DEFAULT_CHECKPOINT_ENV, default_checkpoint_path
from .nvidia_pickle import load_nvidia_pickle, nvidia_to_pulse_state_dicts
from .pulse_state_dict import StateDictError, infer_config, mapping_params, synthesis_params
from .safe_pickle import checkpoint_errors, open_checkpoint
from .tf_stylegan2 import is_stylegan2
from .tf_stylegan2 import state_dict as tf_state_dict
from .torch.files import load_torch_file

__all__ = ["default_generator", "from_pulse_state_dicts", "import_nvidia", "import_pulse",
           "nvidia_format", "read_gaussian_fit", "source_record"]

_FIT_KEYS = ("mean", "std")


def _checked_fit(fit: Any, dlatent_size: int, where: str) -> dict[str, np.ndarray]:
    """``fit`` as ``{"mean": [D], "std": [D]}`` float32 arrays, or StateDictError naming
    ``where`` (the file, or ``gaussian_fit`` for one in memory) and what is wrong."""
    if not isinstance(fit, Mapping) or set(fit) != set(_FIT_KEYS):
        found = sorted(map(str, fit)) if isinstance(fit, Mapping) else type(fit).__name__
        raise StateDictError(f"{where} must be a dict with keys 'mean' and 'std', found {found}")
    out = {}
    for k in _FIT_KEYS:
        try:
            a = np.asarray(fit[k], np.float32)
        except (TypeError, ValueError) as e:
            raise StateDictError(f"{where} key {k!r}: not an array of numbers ({e})") from None
        if a.shape != (dlatent_size,):
            raise StateDictError(f"{where} key {k!r}: expected shape ({dlatent_size},), "
                                 f"found {a.shape}")
        if not np.isfinite(a).all():
            raise StateDictError(f"{where} key {k!r}: {int((~np.isfinite(a)).sum())} of "
                                 f"{dlatent_size} values are not finite")
        out[k] = a
    return out


def read_gaussian_fit(path: os.PathLike, dlatent_size: int) -> dict[str, np.ndarray]:
    """PULSE's ``gaussian_fit.pt`` (either PyTorch format), checked.

    Args:
      path: the ``.pt`` file, a dict ``{"mean": [D], "std": [D]}`` of tensors.
      dlatent_size: D, the generator's ``config.dlatent_size`` (512 for FFHQ).

    Returns ``{"mean": [D], "std": [D]}`` float32 numpy arrays, e.g. for
    ``gen.replace_gaussian_fit(**fit)``. Raises :class:`~.errors.CheckpointFormatError` for a
    damaged or unsafe file and :class:`StateDictError` for other keys, another shape or a
    value that is not finite, each naming the file and the key.
    """
    return _checked_fit(load_torch_file(path), dlatent_size, f"{os.fspath(path)}: gaussian_fit")


def from_pulse_state_dicts(synthesis: Mapping[str, Any],
                           mapping: Optional[Mapping[str, Any]] = None,
                           gaussian_fit: Optional[Mapping[str, Any]] = None) -> Generator:
    """Build a :class:`Generator` from the reference's state dicts (numpy arrays).

    Args:
      synthesis: ``G_synthesis.state_dict()`` as ``{key: array}`` (e.g. ``blocks.4x4.const``).
      mapping: ``G_mapping.state_dict()`` (``dense0.weight`` ...), optional: PULSE's search
        never runs the mapping network; it is needed only to compute a Gaussian fit.
      gaussian_fit: ``{"mean": [D], "std": [D]}``, optional.

    The config (resolution, widths, latent size) is inferred from the shapes. Missing or
    unexpected keys, wrong shapes and a non-finite Gaussian fit raise :class:`StateDictError`
    naming the key and the expected and found shapes.
    """
    config = infer_config(synthesis, mapping)
    params = {"synthesis": synthesis_params(config, synthesis),
              "mapping": None if mapping is None else mapping_params(config, mapping)}
    fit = None
    if gaussian_fit is not None:
        fit = {k: jnp.asarray(v) for k, v in
               _checked_fit(gaussian_fit, config.dlatent_size, "gaussian_fit").items()}
    return Generator(config=config, params=params, gaussian_fit=fit)


def source_record(path: os.PathLike, role: str) -> dict:
    """``{"role", "path", "sha256", "bytes"}`` of a source file, for checkpoint manifests."""
    return {"role": role, "path": os.path.abspath(path), "sha256": files.sha256_file(path),
            "bytes": os.path.getsize(path)}


def _state_dict(path: os.PathLike, what: str) -> Mapping[str, Any]:
    obj = load_torch_file(path)
    if not isinstance(obj, Mapping):
        raise StateDictError(f"{path}: expected a {what} state dict, found {type(obj).__name__}")
    return obj


def import_pulse(synthesis_path: os.PathLike, mapping_path: Optional[os.PathLike] = None,
                 gaussian_fit_path: Optional[os.PathLike] = None) -> Generator:
    """Read PULSE's ``synthesis.pt`` (and optionally ``mapping.pt``, ``gaussian_fit.pt``).

    Both PyTorch formats are read (zip archive and legacy, storages tagged ``cuda:0``
    included) without PyTorch; a pickle referring to anything but tensors and dicts is
    refused before it runs. The Gaussian fit is checked as :func:`read_gaussian_fit` does.
    """
    syn = _state_dict(synthesis_path, "synthesis")
    mapping = None if mapping_path is None else _state_dict(mapping_path, "mapping")
    gen = from_pulse_state_dicts(syn, mapping)
    if gaussian_fit_path is None:
        return gen
    return gen.replace_gaussian_fit(**read_gaussian_fit(gaussian_fit_path,
                                                        gen.config.dlatent_size))


def nvidia_format(pkl_path: os.PathLike) -> str:
    """Which kind of NVIDIA pickle ``pkl_path`` is, from the first network module its stream
    names: "stylegan2-ada" (PyTorch ``torch_utils.persistence`` networks) or "tensorflow"
    (``dnnlib.tflib`` Networks: StyleGAN v1 or StyleGAN2). The opcodes are only parsed
    (``pickletools.genops``), never executed, and parsing stops at the first match."""
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
    mapping weights but no Gaussian fit: compute one with
    :func:`~pulse_jax.weights.compute_gaussian_fit` (``pulse-jax convert`` does) or, for
    StyleGAN v1 FFHQ, load PULSE's ``gaussian_fit.pt`` (:func:`read_gaussian_fit`).
    """
    if nvidia_format(pkl_path) == "stylegan2-ada":
        net = load_ada_pickle(pkl_path, network=network or "G_ema")
        return _stylegan2_generator(pkl_path, net["init_kwargs"], net["state_dict"])
    nv = load_nvidia_pickle(pkl_path, network=network or "Gs")
    if is_stylegan2(nv["synthesis"]):
        try:
            kwargs, sd = tf_state_dict(nv)
        except ValueError as e:
            raise CheckpointFormatError(f"{os.fspath(pkl_path)}: {e}") from None
        return _stylegan2_generator(pkl_path, kwargs, sd)
    syn, mapping = nvidia_to_pulse_state_dicts(nv)
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
