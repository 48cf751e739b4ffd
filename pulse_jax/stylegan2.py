"""StyleGAN2 (Karras et al. 2020) generator, as NVIDIA's StyleGAN2-ADA PyTorch code defines it,
in JAX, NHWC, float32.

Everything is derived from a frozen :class:`StyleGAN2Config`, whose fields are the official
``Generator`` constructor arguments (``z_dim``, ``w_dim``, ``img_resolution``, the mapping and
synthesis keyword arguments), so a pickle's own arguments rebuild its architecture. Nothing
here reads files or knows about the PULSE search; docs/stylegan2.md describes the network.

Parameters keep the official names and raw values (the equalized-lr gains are applied at
every pass, as the official code does) in our layouts:

* dense ``weight`` ``[in, out]`` (official ``[out, in]`` transposed), ``bias [out]``;
* conv ``weight`` ``[k, k, in, out]`` (HWIO; official OIHW transposed), ``bias [out]``;
* ``b4.const`` ``[4, 4, C]`` (official ``[C, 4, 4]``); ``noise_strength`` ``[]``;
  ``noise_const`` ``[r, r]`` (the stored noise, used only by :func:`const_noise`);
  ``mapping.w_avg`` ``[w_dim]`` (the truncation centre).

Pure entry points: :func:`synthesize`, :func:`map_latents`, :func:`truncate`.
W+ has ``num_layers`` rows: conv layer ``i`` (in the official order ``b4.conv1, b8.conv0,
b8.conv1, ...``) reads row ``i`` and noise map ``i``; a block's ToRGB reads the row after its
last conv (the next block's first), as the official code does.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, ClassVar, Mapping as MappingT, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

Params = MappingT[str, Any]

FAMILY = "stylegan2"
ARCHITECTURES = ("orig", "skip", "resnet")
_SQRT2 = math.sqrt(2.0)
_LRELU_SLOPE = 0.2


@dataclasses.dataclass(frozen=True)
class StyleGAN2Config:
    """Architecture of a StyleGAN2 generator: the official constructor arguments.

    Attributes (official name in brackets where it differs):
      img_resolution: output side R, a power of two >= 4.
      z_dim, w_dim: widths of z and of W (and of every W+ row).
      img_channels: image channels (3).
      mapping_layers [mapping_kwargs.num_layers]: dense layers of the mapping network.
      mapping_lr_multiplier [mapping_kwargs.lr_multiplier]: its learning-rate multiplier.
      mapping_layer_features [mapping_kwargs.layer_features]: hidden width (None: w_dim).
      channel_base, channel_max: block widths ``min(channel_base // res, channel_max)``.
      architecture: "skip" (the default), "orig" or "resnet".
      conv_clamp: clamp of every conv output to +-conv_clamp (None: no clamp).
      resample_filter: the 1-D FIR taps of the up-sampling filter (normalized to sum 1).
      num_fp16_res: kept for the record; this port always computes in float32 (the
        official code with ``force_fp32=True``).
    """

    family: ClassVar[str] = FAMILY

    img_resolution: int = 1024
    z_dim: int = 512
    w_dim: int = 512
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    mapping_layer_features: Optional[int] = None
    channel_base: int = 32768
    channel_max: int = 512
    architecture: str = "skip"
    conv_clamp: Optional[float] = None
    resample_filter: tuple[int, ...] = (1, 3, 3, 1)
    num_fp16_res: int = 0

    def __post_init__(self):
        r = self.img_resolution
        if not isinstance(r, int) or r < 4 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two >= 4, got {r!r}")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers", "channel_base",
                     "channel_max"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {ARCHITECTURES}, "
                             f"got {self.architecture!r}")
        if self.conv_clamp is not None and not self.conv_clamp >= 0:
            raise ValueError(f"conv_clamp must be None or >= 0, got {self.conv_clamp!r}")
        if self.channel_base // r < 1:
            raise ValueError(f"channel_base {self.channel_base} gives no channels at {r}x{r}")
        object.__setattr__(self, "resample_filter", tuple(self.resample_filter))
        if not self.resample_filter or sum(self.resample_filter) == 0:
            raise ValueError(f"resample_filter must have a non-zero sum, "
                             f"got {self.resample_filter}")

    # Names the rest of pulse-jax reads from any generator config.
    @property
    def resolution(self) -> int:
        return self.img_resolution

    @property
    def dlatent_size(self) -> int:
        return self.w_dim

    @property
    def z_size(self) -> int:
        return self.z_dim

    @property
    def num_channels(self) -> int:
        return self.img_channels

    @property
    def log2_resolution(self) -> int:
        return int(round(math.log2(self.img_resolution)))

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        return tuple(2**r for r in range(2, self.log2_resolution + 1))

    def channels(self, res: int) -> int:
        return min(self.channel_base // res, self.channel_max)

    @property
    def conv_layers(self) -> tuple[tuple[int, str], ...]:
        """``(block resolution, "conv0" | "conv1")`` of every conv layer, in W+ row order."""
        out = []
        for res in self.block_resolutions:
            if res > 4:
                out.append((res, "conv0"))
            out.append((res, "conv1"))
        return tuple(out)

    @property
    def num_layers(self) -> int:
        """W+ rows (the official ``num_ws``): one per conv layer plus the last ToRGB's."""
        return len(self.conv_layers) + 1

    @property
    def noise_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Per conv layer ``(r, r, 1)`` in the official order (one fewer than W+ rows)."""
        return tuple((res, res, 1) for res, _ in self.conv_layers)

    @property
    def hidden_features(self) -> int:
        return self.w_dim if self.mapping_layer_features is None else self.mapping_layer_features

    def has_torgb(self, res: int) -> bool:
        return self.architecture == "skip" or res == self.img_resolution

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: MappingT[str, Any]) -> "StyleGAN2Config":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown StyleGAN2Config fields: {sorted(unknown)}")
        return cls(**dict(d))

    @classmethod
    def from_init_kwargs(cls, kwargs: MappingT[str, Any]) -> "StyleGAN2Config":
        """The config of the official ``Generator(**kwargs)`` (kwargs as pickled by ADA).

        Raises ValueError for conditional generators (``c_dim > 0``: PULSE has no labels) and
        for arguments that change the network in ways this port does not implement.
        """
        kw = dict(kwargs)
        kw.pop("class_name", None)
        mapping = dict(kw.pop("mapping_kwargs", None) or {})
        synthesis = dict(kw.pop("synthesis_kwargs", None) or {})
        if kw.pop("c_dim", 0):
            raise ValueError("conditional generators (c_dim > 0) are not supported: PULSE "
                             "searches without class labels")
        out: dict[str, Any] = {}
        for name in ("z_dim", "w_dim", "img_resolution", "img_channels"):
            if name not in kw:
                raise ValueError(f"Generator arguments lack {name!r}")
            out[name] = kw.pop(name)
        if kw:
            raise ValueError(f"unsupported Generator arguments {sorted(kw)}")
        renames = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier",
                   "layer_features": "mapping_layer_features"}
        for k, v in mapping.items():
            if k in renames:
                out[renames[k]] = v
            elif k == "activation" and v != "lrelu":
                raise ValueError(f"mapping activation {v!r} is not supported (only 'lrelu')")
            elif k == "w_avg_beta" and v is None:
                raise ValueError("mapping networks without w_avg (w_avg_beta=None) are not "
                                 "supported")
            elif k not in ("activation", "w_avg_beta", "embed_features"):
                raise ValueError(f"unsupported mapping argument {k!r}")
        for k, v in synthesis.items():
            if k in ("channel_base", "channel_max", "architecture", "conv_clamp", "num_fp16_res"):
                out[k] = v
            elif k == "resample_filter":
                out[k] = tuple(int(t) for t in v)
            elif k == "use_noise" and v is not True:
                raise ValueError("generators without noise inputs are not supported")
            elif k in ("activation", "kernel_size") and v not in ("lrelu", 3):
                raise ValueError(f"unsupported synthesis {k}={v!r}")
            elif k not in ("fp16_channels_last", "channels_last", "use_noise", "activation",
                           "kernel_size"):
                raise ValueError(f"unsupported synthesis argument {k!r}")
        return cls(**out)


# ----------------------------------------------------------------------------------------
# Building blocks on NHWC float32 arrays.


def lrelu(x: jax.Array) -> jax.Array:
    return jnp.where(x >= 0, x, x * _LRELU_SLOPE)


def normalize_2nd_moment(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    """``x / sqrt(mean(x**2, -1) + eps)``; x ``[N, D]``."""
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def bias_act(x: jax.Array, bias: Optional[jax.Array], act: str, gain: float,
             clamp: Optional[float]) -> jax.Array:
    """The official ``bias_act``: add bias, activate, scale by ``gain``, clamp to +-clamp."""
    if bias is not None:
        x = x + bias
    if act == "lrelu":
        x = lrelu(x)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    return x


def dense(p: Params, x: jax.Array, lr_multiplier: float = 1.0, act: str = "linear") -> jax.Array:
    """Equalized-lr dense layer; ``p["weight"]`` ``[in, out]``; lrelu layers gain sqrt(2)."""
    w = p["weight"] * (lr_multiplier / math.sqrt(p["weight"].shape[0]))
    gain = _SQRT2 if act == "lrelu" else 1.0
    return bias_act(x @ w, p["bias"] * lr_multiplier, act, gain, None)


def fir_filter(config: StyleGAN2Config) -> np.ndarray:
    """The 2-D FIR ``outer(f, f) / sum(f)**2`` ``[k, k]`` (the official ``setup_filter``)."""
    f = np.asarray(config.resample_filter, np.float32)
    f2 = np.outer(f, f)
    return (f2 / f2.sum()).astype(np.float32)


def _conv(x: jax.Array, w: jax.Array, padding, lhs_dilation=(1, 1),
          groups: int = 1) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, w, window_strides=(1, 1), padding=padding, lhs_dilation=lhs_dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups)


def _fir(x: jax.Array, f: np.ndarray, pad: tuple[int, int], up: bool) -> jax.Array:
    """The official ``upfirdn2d`` with ``down=1``: optional x2 zero insertion, pad (before,
    after; with respect to the upsampled image), then convolve every channel with ``f``
    (times 4 when upsampling, to keep the signal's magnitude)."""
    c = x.shape[-1]
    k = f[::-1, ::-1] * (4.0 if up else 1.0)  # convolution, not correlation
    w = jnp.broadcast_to(jnp.asarray(k)[:, :, None, None], k.shape + (1, c))
    # Zero insertion of an H-sample signal gives 2H samples (a trailing zero); lhs_dilation
    # gives 2H - 1, so the trailing pad grows by one.
    pad_hw = (pad[0], pad[1] + 1) if up else pad
    return _conv(x, w, (pad_hw, pad_hw), (2, 2) if up else (1, 1), groups=c)


def upsample2d(config: StyleGAN2Config, x: jax.Array) -> jax.Array:
    """The official ``upsample2d``: ``[B, H, W, C]`` -> ``[B, 2H, 2W, C]`` with the FIR."""
    f = fir_filter(config)
    fw = f.shape[0]
    return _fir(x, f, ((fw + 1) // 2, (fw - 2) // 2), up=True)


def conv2d_resample(config: StyleGAN2Config, x: jax.Array, w: jax.Array, up: bool) -> jax.Array:
    """The official ``conv2d_resample`` as its layers use it (``padding = k // 2``).

    Without ``up``: correlation with ``w`` ``[k, k, I, O]``, same size. With ``up``: zero
    insertion, the FIR and a true convolution with ``w`` (the official layers pass
    ``flip_weight=False`` when upsampling), ``[B, H, W, I]`` -> ``[B, 2H, 2W, O]``.
    """
    k = w.shape[0]
    p = k // 2
    if not up:
        return _conv(x, w, ((p, p), (p, p)))
    f = fir_filter(config)
    fw = f.shape[0]
    if k == 1:  # 1x1 conv first, then the FIR (the official fast path)
        return _fir(_conv(x, w, ((0, 0), (0, 0))), f, (p + (fw + 1) // 2, p + (fw - 2) // 2), True)
    # Both steps are linear and shift invariant, so the conv runs first on the zero-inserted
    # input (padded as the official code pads it for the FIR) and the FIR runs last, valid.
    pad0, pad1 = p + (fw + 1) // 2, p + (fw - 2) // 2
    y = _conv(x, w[::-1, ::-1], ((pad0, pad1 + 1),) * 2, lhs_dilation=(2, 2))
    return _fir(y, f, (0, 0), up=False) * 4.0


def modulated_conv(config: StyleGAN2Config, x: jax.Array, weight: jax.Array, styles: jax.Array,
                   demodulate: bool = True, up: bool = False) -> jax.Array:
    """The official ``modulated_conv2d`` (unfused form: scale the activations, not the weights).

    x ``[B, H, W, I]``; weight ``[k, k, I, O]``; styles ``[B, I]``. Demodulation divides each
    output channel by ``sqrt(sum_{k,k,I} (weight * style)**2 + 1e-8)``.
    """
    y = conv2d_resample(config, x * styles[:, None, None, :], weight, up)
    if demodulate:
        wsq = jnp.sum(jnp.square(weight), axis=(0, 1))  # [I, O]
        dcoefs = jax.lax.rsqrt(jnp.square(styles) @ wsq + 1e-8)  # [B, O]
        y = y * dcoefs[:, None, None, :]
    return y


def synthesis_layer(config: StyleGAN2Config, p: Params, x: jax.Array, w: jax.Array,
                    noise: jax.Array, up: bool, gain: float = 1.0) -> jax.Array:
    """Modulated 3x3 conv (optionally x2 up) + noise * strength + bias, lrelu, clamp.

    x ``[B, H, W, I]``; w ``[B, w_dim]``; noise ``[B, r, r, 1]`` (r the output side).
    """
    styles = dense(p["affine"], w)
    y = modulated_conv(config, x, p["weight"], styles, demodulate=True, up=up)
    y = y + noise * p["noise_strength"]
    clamp = None if config.conv_clamp is None else config.conv_clamp * gain
    return bias_act(y, p["bias"], "lrelu", _SQRT2 * gain, clamp)


def torgb_layer(config: StyleGAN2Config, p: Params, x: jax.Array, w: jax.Array) -> jax.Array:
    """1x1 modulated conv without demodulation, + bias, clamp: ``[B, H, W, img_channels]``."""
    k = p["weight"].shape[0]
    styles = dense(p["affine"], w) * (1.0 / math.sqrt(p["weight"].shape[2] * k * k))
    y = modulated_conv(config, x, p["weight"], styles, demodulate=False)
    return bias_act(y, p["bias"], "linear", 1.0, config.conv_clamp)


def synthesis_block(config: StyleGAN2Config, res: int, p: Params, x: Optional[jax.Array],
                    img: Optional[jax.Array], ws: Sequence[jax.Array],
                    noises: Sequence[jax.Array]) -> tuple[jax.Array, Optional[jax.Array]]:
    """One block: (features, image so far) -> (features, image) at side ``res``.

    ``ws``: its rows (conv rows then the ToRGB row), ``noises``: its conv layers' maps.
    """
    if res == 4:
        B = ws[0].shape[0]
        x = jnp.broadcast_to(p["const"][None], (B,) + p["const"].shape)
        x = synthesis_layer(config, p["conv1"], x, ws[0], noises[0], up=False)
        wrgb = ws[1]
    elif config.architecture == "resnet":
        k = p["skip"]["weight"]
        y = bias_act(conv2d_resample(config, x, k * (1.0 / math.sqrt(k.shape[2])), up=True),
                     None, "linear", math.sqrt(0.5), None)
        x = synthesis_layer(config, p["conv0"], x, ws[0], noises[0], up=True)
        x = synthesis_layer(config, p["conv1"], x, ws[1], noises[1], up=False,
                            gain=math.sqrt(0.5))
        x = y + x
        wrgb = ws[2]
    else:
        x = synthesis_layer(config, p["conv0"], x, ws[0], noises[0], up=True)
        x = synthesis_layer(config, p["conv1"], x, ws[1], noises[1], up=False)
        wrgb = ws[2]
    if img is not None:
        img = upsample2d(config, img)
    if config.has_torgb(res):
        y = torgb_layer(config, p["torgb"], x, wrgb)
        img = y if img is None else img + y
    return x, img


def check_inputs(config: StyleGAN2Config, wplus: jax.Array, noises: Sequence[jax.Array]) -> None:
    L, D = config.num_layers, config.w_dim
    if wplus.ndim != 3 or wplus.shape[1] != L or wplus.shape[2] != D:
        raise ValueError(f"wplus must be [B, {L}, {D}], got {wplus.shape}")
    shapes = config.noise_shapes
    if len(noises) != len(shapes):
        raise ValueError(f"expected {len(shapes)} noise maps, got {len(noises)}")
    for i, (n, shape) in enumerate(zip(noises, shapes)):
        if tuple(n.shape[1:]) != shape:
            raise ValueError(f"noise {i} must be [B, {shape[0]}, {shape[1]}, 1], got {n.shape}")


def synthesis_apply(config: StyleGAN2Config, params: Params, wplus: jax.Array,
                    noises: Sequence[jax.Array], remat: bool = False) -> jax.Array:
    """Unjitted :func:`synthesize` (for callers that jit a larger function)."""
    check_inputs(config, wplus, noises)
    x = img = None
    row = 0
    for res in config.block_resolutions:
        n_conv = 1 if res == 4 else 2
        ws = [wplus[:, row + j] for j in range(n_conv + 1)]
        block_noises = list(noises[row:row + n_conv])
        fn = functools.partial(synthesis_block, config, res)
        if remat:
            fn = jax.checkpoint(fn)
        x, img = fn(params[f"b{res}"], x, img, ws, block_noises)
        row += n_conv
    return img


@functools.partial(jax.jit, static_argnames=("config", "remat"))
def synthesize(config: StyleGAN2Config, params: Params, wplus: jax.Array,
               noises: Sequence[jax.Array], remat: bool = False) -> jax.Array:
    """Raw image ``[B, R, R, img_channels]`` (about [-1, 1], unclamped) from W+
    ``[B, num_layers, w_dim]`` and one noise map ``[B, r, r, 1]`` per conv layer.

    ``remat`` rematerializes each block in the backward pass (same function).
    """
    return synthesis_apply(config, params, wplus, list(noises), remat)


def mapping_apply(config: StyleGAN2Config, params: Params, z: jax.Array) -> jax.Array:
    x = normalize_2nd_moment(z)
    for i in range(config.mapping_layers):
        x = dense(params[f"fc{i}"], x, config.mapping_lr_multiplier, "lrelu")
    return x


@functools.partial(jax.jit, static_argnames=("config",))
def map_latents(config: StyleGAN2Config, params: Params, z: jax.Array) -> jax.Array:
    """Mapping network: z ``[N, z_dim]`` -> w ``[N, w_dim]`` (one row; no truncation)."""
    if z.ndim != 2 or z.shape[1] != config.z_dim:
        raise ValueError(f"z must be [N, {config.z_dim}], got {z.shape}")
    return mapping_apply(config, params, z)


def truncate(w: jax.Array, w_avg: jax.Array, psi: float,
             cutoff: Optional[int] = None) -> jax.Array:
    """The official truncation ``w_avg + psi * (w - w_avg)``; w ``[N, D]`` or W+ ``[N, L, D]``;
    with ``cutoff``, only W+ rows below it are truncated."""
    t = w_avg + psi * (w - w_avg)
    if cutoff is None:
        return t
    if w.ndim != 3:
        raise ValueError("truncation cutoff needs W+ [N, L, D]")
    rows = jnp.arange(w.shape[1])[None, :, None] < cutoff
    return jnp.where(rows, t, w)


# ----------------------------------------------------------------------------------------
# Parameters: shapes, official names and layouts, random init.


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
        if isinstance(v, MappingT):
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


def params_from_state_dict(config: StyleGAN2Config, sd: MappingT[str, Any],
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


# ----------------------------------------------------------------------------------------
# Noise.


def noise_zeros(config: StyleGAN2Config, batch: int, dtype=jnp.float32) -> list[jax.Array]:
    """All-zero noise maps, one ``[batch, r, r, 1]`` per conv layer."""
    return [jnp.zeros((batch,) + s, dtype) for s in config.noise_shapes]


def noise_normal(config: StyleGAN2Config, key: jax.Array, batch: int) -> list[jax.Array]:
    """Standard-normal noise maps, one ``[batch, r, r, 1]`` per conv layer."""
    keys = jax.random.split(key, len(config.noise_shapes))
    return [jax.random.normal(k, (batch,) + s, jnp.float32)
            for k, s in zip(keys, config.noise_shapes)]


def const_noise(config: StyleGAN2Config, params: Params, batch: int) -> list[jax.Array]:
    """The stored noise (the official ``noise_mode='const'``), ``[batch, r, r, 1]`` each."""
    syn = params["synthesis"] if "synthesis" in params else params
    return [jnp.broadcast_to(syn[f"b{res}"][conv]["noise_const"][None, :, :, None],
                             (batch, res, res, 1))
            for res, conv in config.conv_layers]
