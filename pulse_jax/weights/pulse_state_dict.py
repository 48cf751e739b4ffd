"""The PULSE reference's state-dict key names and layouts, and conversion to our params.

The reference (``stylegan.py`` of adamian98/pulse) stores PyTorch layouts: dense weights
``[out, in]``, conv weights OIHW, the 4x4 ``const`` as ``[1, C, 4, 4]``. Ours are
``[in, out]``, HWIO and ``[1, 4, 4, C]``. Values are never rescaled: both sides store the
raw equalized-learning-rate parameters.

| reference key                                   | ours (params path)                   |
| ----------------------------------------------- | ------------------------------------ |
| ``torgb.weight [3, C, 1, 1]`` / ``torgb.bias``  | ``torgb/kernel [1, 1, C, 3]`` / bias |
| ``blocks.4x4.const [1, C, 4, 4]``               | ``4x4/const [1, 4, 4, C]``           |
| ``blocks.4x4.bias [C]``                         | ``4x4/bias``                         |
| ``blocks.4x4.conv.{weight, bias}``              | ``4x4/conv/{kernel, bias}``          |
| ``blocks.RxR.conv0_up.{weight, bias}``          | ``RxR/conv0_up/{kernel, bias}``      |
| ``blocks.RxR.conv0_up.intermediate.kernel``     | (fixed blur; checked, not stored)    |
| ``blocks.RxR.conv1.{weight, bias}``             | ``RxR/conv1/{kernel, bias}``         |
| ``blocks.RxR.epiN.noise.weight [C]``            | ``RxR/epiN/noise_strength``          |
| ``blocks.RxR.epiN.style_mod.lin.weight [2C, D]``| ``RxR/epiN/style/kernel [D, 2C]``    |
| ``denseK.{weight, bias}`` (mapping)             | ``denseK/{kernel, bias}``            |
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable, Mapping, Optional

import numpy as np

from pulse_jax.stylegan import GeneratorConfig

BLUR_KERNEL = (np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0).astype(np.float32)[None, None]


class StateDictError(ValueError):
    """A state dict whose keys or shapes do not match the reference architecture."""


@dataclasses.dataclass(frozen=True)
class _Entry:
    key: str                      # reference key
    path: Optional[tuple]         # our params path, None for buffers we only check
    shape: tuple                  # reference (torch) shape
    to_ours: Callable[[np.ndarray], np.ndarray]
    to_ref: Callable[[np.ndarray], np.ndarray]


def _same(a):
    return a


def _dense_in(a):
    return np.ascontiguousarray(a.T)


def _conv_in(a):   # OIHW -> HWIO
    return np.ascontiguousarray(a.transpose(2, 3, 1, 0))


def _conv_out(a):  # HWIO -> OIHW
    return np.ascontiguousarray(a.transpose(3, 2, 0, 1))


def _const_in(a):  # [1, C, 4, 4] -> [1, 4, 4, C]
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _const_out(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def synthesis_entries(config: GeneratorConfig) -> list[_Entry]:
    """Every synthesis state-dict entry of the reference, in its ``state_dict()`` order."""
    D = config.dlatent_size
    out: list[_Entry] = []

    def dense(key, path, n_in, n_out):
        out.append(_Entry(f"{key}.weight", path + ("kernel",), (n_out, n_in), _dense_in, _dense_in))
        out.append(_Entry(f"{key}.bias", path + ("bias",), (n_out,), _same, _same))

    def conv(key, path, cin, cout, k):
        out.append(_Entry(f"{key}.weight", path + ("kernel",), (cout, cin, k, k), _conv_in, _conv_out))
        out.append(_Entry(f"{key}.bias", path + ("bias",), (cout,), _same, _same))

    def epi(key, path, c):
        out.append(_Entry(f"{key}.noise.weight", path + ("noise_strength",), (c,), _same, _same))
        dense(f"{key}.style_mod.lin", path + ("style",), D, 2 * c)

    last = config.width(config.resolution)
    conv("torgb", ("torgb",), last, config.num_channels, 1)
    prev = None
    for res in config.block_resolutions:
        c, name = config.width(res), f"{res}x{res}"
        key, path = f"blocks.{name}", (name,)
        if res == 4:
            out.append(_Entry(f"{key}.const", path + ("const",), (1, c, 4, 4), _const_in, _const_out))
            out.append(_Entry(f"{key}.bias", path + ("bias",), (c,), _same, _same))
            epi(f"{key}.epi1", path + ("epi1",), c)
            conv(f"{key}.conv", path + ("conv",), c, c, 3)
            epi(f"{key}.epi2", path + ("epi2",), c)
        else:
            conv(f"{key}.conv0_up", path + ("conv0_up",), prev, c, 3)
            out.append(_Entry(f"{key}.conv0_up.intermediate.kernel", None, (1, 1, 3, 3), _same, _same))
            epi(f"{key}.epi1", path + ("epi1",), c)
            conv(f"{key}.conv1", path + ("conv1",), c, c, 3)
            epi(f"{key}.epi2", path + ("epi2",), c)
        prev = c
    return out


def mapping_entries(config: GeneratorConfig) -> list[_Entry]:
    D = config.dlatent_size
    out = []
    for i in range(config.mapping_layers):
        out.append(_Entry(f"dense{i}.weight", (f"dense{i}", "kernel"), (D, D), _dense_in, _dense_in))
        out.append(_Entry(f"dense{i}.bias", (f"dense{i}", "bias"), (D,), _same, _same))
    return out


def state_dict_shapes(config: GeneratorConfig) -> dict[str, dict[str, tuple]]:
    """``{"synthesis": {key: shape}, "mapping": {key: shape}}`` as the reference saves them."""
    return {"synthesis": {e.key: e.shape for e in synthesis_entries(config)},
            "mapping": {e.key: e.shape for e in mapping_entries(config)}}


def _fit_widths(widths: Mapping[int, int]) -> tuple[int, int]:
    """Find (fmap_base, fmap_max) with fmap_decay 1 that reproduce the block widths."""
    fmap_max = max(widths.values())
    base = None
    for res, c in sorted(widths.items()):
        if c < fmap_max:  # unclamped: int(base / 2**stage) == c
            base = c * 2 ** (int(math.log2(res)) - 1)
            break
    if base is None:  # every block at fmap_max: the smallest base that clamps them all
        base = fmap_max * 2 ** (int(math.log2(max(widths))) - 1)
    return base, fmap_max


def infer_config(synthesis: Mapping[str, Any], mapping: Optional[Mapping[str, Any]] = None,
                 **overrides) -> GeneratorConfig:
    """The :class:`GeneratorConfig` that a reference synthesis state dict was built with.

    Reads the block keys ``blocks.RxR.*`` (resolution), their conv shapes (widths), the
    style weights (dlatent size) and ``torgb.weight`` (channels); mapping depth from
    ``denseK`` keys. Raises :class:`StateDictError` if the widths fit no
    ``(fmap_base, fmap_decay=1, fmap_max)``.
    """
    res = sorted({int(m.group(1)) for k in synthesis
                  if (m := re.match(r"blocks\.(\d+)x\1\.", k))})
    if not res or res[0] != 4:
        raise StateDictError("no 'blocks.4x4.*' keys: not a PULSE/StyleGAN-v1 synthesis state dict "
                             f"(first keys: {list(synthesis)[:5]})")
    widths = {}
    for r in res:
        key = "blocks.4x4.conv.weight" if r == 4 else f"blocks.{r}x{r}.conv1.weight"
        if key not in synthesis:
            raise StateDictError(f"missing key {key!r}")
        widths[r] = int(np.shape(synthesis[key])[0])
    style_key = "blocks.4x4.epi1.style_mod.lin.weight"
    if style_key not in synthesis:
        raise StateDictError(f"missing key {style_key!r}")
    if "torgb.weight" not in synthesis:
        raise StateDictError("missing key 'torgb.weight'")
    base, fmax = _fit_widths(widths)
    kwargs = dict(resolution=res[-1], fmap_base=base, fmap_decay=1.0, fmap_max=fmax,
                  dlatent_size=int(np.shape(synthesis[style_key])[1]),
                  num_channels=int(np.shape(synthesis["torgb.weight"])[0]))
    if mapping is not None:
        kwargs["mapping_layers"] = len([k for k in mapping if re.fullmatch(r"dense\d+\.weight", k)])
    kwargs.update(overrides)
    config = GeneratorConfig(**kwargs)
    got = dict(zip(config.block_resolutions, config.widths))
    if got != widths:
        raise StateDictError(f"block widths {widths} do not follow min(int(fmap_base / 2**stage), "
                             f"fmap_max) for any fmap_base (tried {base}, fmap_max {fmax}: {got})")
    return config


def _convert(entries: list[_Entry], sd: Mapping[str, Any], what: str) -> dict:
    expected = {e.key for e in entries}
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise StateDictError(
            f"{what} state dict does not match the architecture: "
            f"missing keys {sorted(missing)[:10]}{' ...' if len(missing) > 10 else ''}, "
            f"unexpected keys {sorted(unexpected)[:10]}{' ...' if len(unexpected) > 10 else ''}")
    params: dict = {}
    for e in entries:
        a = np.asarray(sd[e.key])
        if tuple(a.shape) != e.shape:
            raise StateDictError(f"{what} key {e.key!r}: expected shape {e.shape}, found {tuple(a.shape)}")
        if not np.issubdtype(a.dtype, np.floating):
            raise StateDictError(f"{what} key {e.key!r}: expected floating point, found {a.dtype}")
        a = a.astype(np.float32)
        if e.path is None:  # the blur buffer: our blur is fixed, so it must be the standard one
            if not np.array_equal(a, BLUR_KERNEL):
                raise StateDictError(f"{what} key {e.key!r}: expected the [1,2,1]x[1,2,1]/16 blur "
                                     f"kernel, found {a.reshape(-1).tolist()}")
            continue
        node = params
        for p in e.path[:-1]:
            node = node.setdefault(p, {})
        node[e.path[-1]] = e.to_ours(a)
    return params


def _to_ref(entries: list[_Entry], params: Mapping) -> dict[str, np.ndarray]:
    sd = {}
    for e in entries:
        if e.path is None:
            sd[e.key] = BLUR_KERNEL.copy()
            continue
        node = params
        for p in e.path:
            node = node[p]
        sd[e.key] = e.to_ref(np.asarray(node, np.float32))
    return sd


def synthesis_params(config: GeneratorConfig, sd: Mapping[str, Any]) -> dict:
    """Reference synthesis state dict -> our synthesis params (checked key by key)."""
    return _convert(synthesis_entries(config), sd, "synthesis")


def mapping_params(config: GeneratorConfig, sd: Mapping[str, Any]) -> dict:
    """Reference mapping state dict -> our mapping params (checked key by key)."""
    return _convert(mapping_entries(config), sd, "mapping")


def synthesis_state_dict(config: GeneratorConfig, params: Mapping) -> dict[str, np.ndarray]:
    """Our synthesis params -> the reference's state dict (keys in its order)."""
    return _to_ref(synthesis_entries(config), params)


def mapping_state_dict(config: GeneratorConfig, params: Mapping) -> dict[str, np.ndarray]:
    return _to_ref(mapping_entries(config), params)
