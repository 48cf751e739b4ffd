"""StyleGAN2 parameters: their shapes, random init, and the official state-dict names and
layouts (dense ``[out, in]``, conv OIHW, const ``[C, 4, 4]``) against ours (dense ``[in, out]``,
conv HWIO, const ``[4, 4, C]``)."""

from __future__ import annotations

from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from pulse_jax.stylegan2.config import StyleGAN2Config

Params = Mapping[str, Any]


def _layer_shapes(cfg: StyleGAN2Config, cin: int, cout: int, res: int, k: int = 3) -> dict:
    return {"affine": {"weight": (cfg.w_dim, cin), "bias": (cin,)},
            "weight": (k, k, cin, cout), "bias": (cout,), "noise_strength": (),
            "noise_const": (res, res)}


def param_shape_tree(config: StyleGAN2Config) -> dict[str, Any]:
    """``{"synthesis": ..., "mapping": ...}`` with shape tuples as leaves (our layouts)."""
    syn: dict[str, Any] = {}
    for res in config.block_resolutions:
        c = config.channels(res)
        b: dict[str, Any] = {}
        if res == 4:
            b["const"] = (4, 4, c)
        else:
            cin = config.channels(res // 2)
            b["conv0"] = _layer_shapes(config, cin, c, res)
            if config.architecture == "resnet":
                b["skip"] = {"weight": (1, 1, cin, c)}
        b["conv1"] = _layer_shapes(config, c, c, res)
        if config.has_torgb(res):
            b["torgb"] = {"affine": {"weight": (config.w_dim, c), "bias": (c,)},
                          "weight": (1, 1, c, config.img_channels),
                          "bias": (config.img_channels,)}
        syn[f"b{res}"] = b
    feats = [config.z_dim] + [config.hidden_features] * (config.mapping_layers - 1) + [config.w_dim]
    mapping: dict[str, Any] = {
        f"fc{i}": {"weight": (feats[i], feats[i + 1]), "bias": (feats[i + 1],)}
        for i in range(config.mapping_layers)}
    mapping["w_avg"] = (config.w_dim,)
    return {"synthesis": syn, "mapping": mapping}


def _is_shape(x: Any) -> bool:
    return isinstance(x, tuple)


def param_shapes(config: StyleGAN2Config) -> dict[str, Any]:
    """The params pytree as ``jax.ShapeDtypeStruct`` leaves (nothing computed)."""
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32),
                                  param_shape_tree(config), is_leaf=_is_shape)


def _official_layout(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, str]:
    """How a leaf is stored officially: ("dense"|"conv"|"const"|"same", official name)."""
    name = ".".join(path)
    if path[-1] == "const":
        return "const", name
    if path[-1] == "weight" and len(shape) == 2:
        return "dense", name
    if path[-1] == "weight" and len(shape) == 4:
        return "conv", name
    return "same", name


def to_official(kind: str, a: np.ndarray) -> np.ndarray:
    if kind == "dense":
        return a.T
    if kind == "conv":
        return a.transpose(3, 2, 0, 1)
    if kind == "const":
        return a.transpose(2, 0, 1)
    return a


def from_official(kind: str, a: np.ndarray) -> np.ndarray:
    if kind == "dense":
        return a.T
    if kind == "conv":
        return a.transpose(2, 3, 1, 0)
    if kind == "const":
        return a.transpose(1, 2, 0)
    return a


def _leaves(tree: Params, prefix: tuple[str, ...] = ()):
    for k, v in tree.items():
        if isinstance(v, Mapping):
            yield from _leaves(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def official_state_dict_shapes(config: StyleGAN2Config) -> dict[str, tuple[int, ...]]:
    """``{official Generator.state_dict() key: shape}`` of the parameters and the buffers
    that carry data (``noise_const``, ``w_avg``), e.g. ``synthesis.b4.conv1.weight``."""
    out = {}
    for path, shape in _leaves(param_shape_tree(config)):
        kind, name = _official_layout(path, shape)
        out[name] = tuple(to_official(kind, np.empty(shape, np.uint8)).shape)
    return out


def params_from_state_dict(config: StyleGAN2Config, sd: Mapping[str, Any],
                           with_mapping: bool = True) -> dict[str, Any]:
    """Our params from an official ``G.state_dict()`` (numpy arrays; extra keys such as
    ``resample_filter`` buffers are ignored). Raises ValueError naming a missing key or a
    wrong shape."""
    out: dict[str, Any] = {"synthesis": {}, "mapping": {} if with_mapping else None}
    for path, shape in _leaves(param_shape_tree(config)):
        if path[0] == "mapping" and not with_mapping:
            continue
        kind, name = _official_layout(path, shape)
        if name not in sd:
            raise ValueError(f"missing parameter {name!r}")
        a = np.asarray(sd[name], np.float32)
        expected = tuple(to_official(kind, np.empty(shape, np.uint8)).shape)
        if a.shape != expected:
            raise ValueError(f"{name}: expected shape {expected}, found {a.shape}")
        node = out
        for k in path[:-1]:
            node = node.setdefault(k, {})
        node[path[-1]] = jnp.asarray(from_official(kind, a))
    return out


def state_dict_from_params(config: StyleGAN2Config, params: Params) -> dict[str, np.ndarray]:
    """The inverse of :func:`params_from_state_dict` (official names and layouts)."""
    out = {}
    for path, leaf in _leaves({k: v for k, v in params.items() if v is not None}):
        kind, name = _official_layout(path, np.shape(leaf))
        out[name] = to_official(kind, np.asarray(leaf))
    return out


def init_params(config: StyleGAN2Config, key: jax.Array) -> dict[str, Any]:
    """Random parameters with the official init: weights N(0, 1) (mapping N(0, 1/lr^2)),
    biases 0 except the affines' 1, noise strengths 0, const and noise_const N(0, 1),
    ``w_avg`` 0."""
    leaves = list(_leaves(param_shape_tree(config)))
    keys = jax.random.split(key, len(leaves))
    out: dict[str, Any] = {}
    for (path, shape), k in zip(leaves, keys):
        last = path[-1]
        if last in ("weight", "const", "noise_const"):
            v = jax.random.normal(k, shape, jnp.float32)
            if path[0] == "mapping":
                v = v / config.mapping_lr_multiplier
        elif last == "bias" and path[-2] == "affine":
            v = jnp.ones(shape, jnp.float32)
        else:
            v = jnp.zeros(shape, jnp.float32)
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[last] = v
    return out
