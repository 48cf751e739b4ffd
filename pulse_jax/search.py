"""The PULSE search: find latents whose generated image downscales to each input face.

For every face, ``restarts`` independent random starts run in parallel (one batch of
``faces x restarts`` through the generator). Each step (docs/reference.md, "One iteration")::

    z -> w+ = LeakyReLU_0.2(z * std + mean) -> gen = (synthesis(w+, noise) + 1) / 2
      -> D(gen) -> loss = sum_k weight_k * term_k (100*L2 + 0.05*GEOCROSS by default)
      -> grad -> inner optimizer step -> project z rows and trainable noise to their radii

Every restart keeps its best iterate (lowest total loss, as the reference's ``best_im``);
each face's result is its best restart (see :class:`SearchConfig` ``select``). Unlike the
reference (docs/reference.md, "Pitfalls") the returned image is the best iterate's, success
is decided per face, and a result is always returned with its l2 and success flag;
``return_image="last"`` reproduces the reference's last-iterate image.

How steps run (``SearchConfig.loop``, ``upconv``; docs/performance.md): the generator's
weight arithmetic is done once per search; on CPU a Python loop calls one compiled step
that donates its state (XLA:CPU runs a step inside ``lax.fori_loop`` about 3x slower), and
the upsampling convolutions run in their sub-pixel form; GPU/TPU use a ``fori_loop`` per
progress chunk. Same function either way, up to float rounding.

Randomness: restart ``r`` of the face with index ``i`` in the request (or ``face_ids[i]``)
draws from ``fold_in(fold_in(PRNGKey(seed), face_id), r)``, so duplicates differ and a
face's start does not depend on the other faces. Bitwise equality of whole runs also
needs the same batch shape (the search is chaotic and a different batch size changes
float32 reduction order); ``batch_size`` pads every chunk of faces to a fixed shape.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable, NamedTuple, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from pulse_jax import convs
from pulse_jax import degrade as degrade_lib
from pulse_jax import losses as losses_lib
from pulse_jax import optim
from pulse_jax import stylegan
from pulse_jax.generator import Generator

NOISE_TYPES = ("zero", "fixed", "trainable")
RETURN_IMAGES = ("best", "last")
SELECT_RULES = ("success_then_total", "total", "l2")
LOOPS = ("auto", "host", "device")
UPCONVS = ("auto",) + convs.UPCONVS

# What "auto" means per platform, from benchmarks/search_bench.py (docs/performance.md).
# XLA:CPU runs the input-gradient convolutions of a step placed inside a while loop through
# a slow path (about 3x slower at 64 and 1024), so CPU loops over steps on the host; other
# platforms keep the device-side loop they were measured with.
_AUTO = {"cpu": {"loop": "host", "upconv": "subpixel"}}
_AUTO_OTHER = {"loop": "device", "upconv": "direct"}

# Python-side trace counts of the jitted stages; tests use them to check for retracing.
TRACE_COUNTS: dict[str, int] = {"init": 0, "steps": 0, "finalize": 0}


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Settings of the search. Fields named as the reference's ``run.py`` flags keep its
    defaults (docs/reference.md, "run.py flags and defaults"); the rest are ours.

    Reference flags:
      loss_str: weighted terms, e.g. ``"100*L2+0.05*GEOCROSS"`` (L2, L1, GEOCROSS).
      eps: success threshold on a face's L2 (MSE in [0,1] units); also the floor below which
        the L2/L1 terms are clamped, so they stop pulling once reached.
      noise_type: "zero", "fixed" (random, frozen) or "trainable" (random; layers below
        ``num_trainable_noise_layers`` are optimized).
      num_trainable_noise_layers: see noise_type.
      tile_latent: one latent row shared by all layers instead of one per layer.
      bad_noise_layers: '.'-separated layer indices whose noise is always zero. "last" means
        the generator's last layer (the reference's "17" at 1024); indices past the
        generator's layers are ignored, as they are in the reference.
      opt_name: "adam", "adamax", "sgd" or "sgdm" (torch semantics).
      learning_rate, steps, lr_schedule ("fixed", "linear1cycle", "linear1cycledrop").

    Ours:
      restarts: random starts per face, run in parallel.
      return_image: "best" (the best iterate's image; the reference before June 2020) or
        "last" (the reference's behaviour since: the last iterate's HR image, with the LR
        image of the best iterate).
      select: how a face's restart is chosen: "success_then_total" (default: restarts
        whose l2 <= eps first, then the lowest total loss, i.e. the most realistic among
        those that downscale correctly), "total" or "l2".
      num_latent_rows: latent rows; None = the generator's layer count. The reference
        hard-codes 18, which at 1024 is the same; set 18 to reproduce it exactly on a
        smaller generator (the extra rows are then moved only by GEOCROSS).
      precision: matmul/conv precision inside the search: "highest" (float32, what the
        reference computed), "high" or "default" (TF32/bf16 passes on GPU/TPU: faster).
      remat: rematerialize each synthesis block in the backward pass (less memory).
      chunk_steps: steps between progress reports.
      keep_restart_images: also return every restart's HR image (for contact sheets).
      loop: how steps are iterated: "host" (a Python loop over one compiled step that
        donates its state), "device" (``lax.fori_loop`` over ``chunk_steps`` steps in one
        compiled call) or "auto" (host on CPU, device elsewhere; measured choices).
      upconv: how the generator's upsampling convs are computed: "direct" (nearest x2 then
        3x3, as the reference), "subpixel" (2.25x fewer multiply-adds, the same function up
        to rounding) or "auto" (subpixel on CPU, direct elsewhere).
      ``loop`` and ``upconv`` change speed, not the result beyond float rounding; since the
      search is chaotic, the bits of a run do depend on them (and on the platform).
    """

    loss_str: str = "100*L2+0.05*GEOCROSS"
    eps: float = 2e-3
    noise_type: str = "trainable"
    num_trainable_noise_layers: int = 5
    tile_latent: bool = False
    bad_noise_layers: str = "last"
    opt_name: str = "adam"
    learning_rate: float = 0.4
    steps: int = 100
    lr_schedule: str = "linear1cycledrop"
    restarts: int = 1
    return_image: str = "best"
    select: str = "success_then_total"
    num_latent_rows: Optional[int] = None
    precision: str = "highest"
    remat: bool = False
    chunk_steps: int = 10
    keep_restart_images: bool = False
    loop: str = "auto"
    upconv: str = "auto"

    def __post_init__(self):
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"unknown noise_type {self.noise_type!r}; use one of {NOISE_TYPES}")
        if self.return_image not in RETURN_IMAGES:
            raise ValueError(f"return_image must be one of {RETURN_IMAGES}, got {self.return_image!r}")
        if self.select not in SELECT_RULES:
            raise ValueError(f"select must be one of {SELECT_RULES}, got {self.select!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {LOOPS}, got {self.loop!r}")
        if self.upconv not in UPCONVS:
            raise ValueError(f"upconv must be one of {UPCONVS}, got {self.upconv!r}")
        if self.precision not in ("highest", "high", "default"):
            raise ValueError(f"precision must be 'highest', 'high' or 'default', got {self.precision!r}")
        for name in ("steps", "restarts", "chunk_steps"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.num_trainable_noise_layers < 0:
            raise ValueError("num_trainable_noise_layers must be >= 0")
        if not (self.eps >= 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a finite number >= 0, got {self.eps!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        # Fail fast on strings that would only break inside the jitted search.
        losses_lib.parse_loss(self.loss_str)
        optim.make_optimizer(self.opt_name, 1.0)
        optim.make_schedule(self.lr_schedule, self.steps, self.learning_rate)
        parse_bad_noise_layers(self.bad_noise_layers, 1)

    def resolved(self, platform: Optional[str] = None) -> "SearchConfig":
        """This config with "auto" ``loop``/``upconv`` replaced by the choice for ``platform``
        ("cpu", "gpu", "tpu"; default: JAX's default backend)."""
        auto = _AUTO.get(platform or jax.default_backend(), _AUTO_OTHER)
        return dataclasses.replace(self, **{k: auto[k] for k in auto if getattr(self, k) == "auto"})


def parse_bad_noise_layers(spec: str, num_layers: int) -> frozenset[int]:
    """'.'-separated layer indices (or "last", or "" for none) -> the set inside range."""
    spec = spec.strip()
    if spec == "":
        return frozenset()
    out = set()
    for part in spec.split("."):
        part = part.strip()
        if part == "last":
            out.add(num_layers - 1)
            continue
        if not part.isdigit():
            raise ValueError(f"bad_noise_layers must be '.'-separated layer indices such as "
                             f"'17' or '15.16.17' (or 'last'), got {spec!r}")
        out.add(int(part))
    return frozenset(i for i in out if i < num_layers)


@dataclasses.dataclass(frozen=True)
class NoisePlan:
    """Which noise layers are zero, frozen random or trainable."""

    zero: tuple[int, ...]
    frozen: tuple[int, ...]
    trainable: tuple[int, ...]

    @classmethod
    def make(cls, cfg: SearchConfig, num_layers: int) -> "NoisePlan":
        bad = parse_bad_noise_layers(cfg.bad_noise_layers, num_layers)
        zero, frozen, trainable = [], [], []
        for i in range(num_layers):
            if i in bad or cfg.noise_type == "zero":
                zero.append(i)
            elif cfg.noise_type == "trainable" and i < cfg.num_trainable_noise_layers:
                trainable.append(i)
            else:
                frozen.append(i)
        return cls(tuple(zero), tuple(frozen), tuple(trainable))


def gaussianize(z: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """PULSE's latent map ``LeakyReLU_0.2(z * std + mean)``; z ``[..., D]``."""
    return stylegan.lrelu(z * std + mean)


class SearchState(NamedTuple):
    """The loop's carry: a pytree of arrays with a leading faces*restarts axis ``B``."""

    params: dict             # {"z": [B, rows, D], "noise": tuple of [B, 1, r, r] trainable maps}
    opt_state: Any
    radii: dict              # same structure as params, [B, rows, 1] / [B, 1, 1, 1]
    frozen_noise: tuple      # [B, 1, r, r] frozen random maps
    best_total: jax.Array    # [B]
    best_l2: jax.Array       # [B] (clamped, as the loss sees it)
    best_step: jax.Array     # [B] int32, -1 until a finite loss was seen
    best_params: dict
    last_params: dict        # params at the last evaluated step (for return_image="last")
    step: jax.Array          # scalar int32


@flax.struct.dataclass
class Result:
    """What :func:`upsample` returns for N faces (arrays, numpy on the host).

    Attributes:
      hr: ``[N, R, R, 3]`` in [0, 1], the chosen image per face.
      lr: ``[N, S, S, 3]``, the downscale of ``hr`` (``D(hr)``, not clipped; with
        ``return_image="last"`` the reference's clamp(D(best image)) instead).
      l2: ``[N]``, mean squared error of ``lr`` against the input (unclamped).
      success: ``[N]`` bool, ``l2 <= eps``.
      restart: ``[N]`` int, the chosen restart.
      restart_l2, restart_total: ``[N, restarts]``: each restart's l2 (from its best
        iterate's clipped image) and best total loss during the search.
      restart_best_step: ``[N, restarts]``: the step of each restart's best iterate.
      latent: ``[N, rows, D]`` the chosen restart's raw Gaussian latent z.
      wplus: ``[N, L, D]`` the W+ latent fed to the synthesis network.
      noises: L arrays ``[N, r, r, 1]``, the noise maps of the chosen iterate.
      restart_hr: ``[N, restarts, R, R, 3]`` if ``keep_restart_images``, else None.
      seed, face_ids: what the random starts were derived from.
    """

    hr: Any
    lr: Any
    l2: Any
    success: Any
    restart: Any
    restart_l2: Any
    restart_total: Any
    restart_best_step: Any
    latent: Any
    wplus: Any
    noises: Any
    restart_hr: Any = None
    seed: int = flax.struct.field(pytree_node=False, default=0)
    face_ids: Any = None


@dataclasses.dataclass(frozen=True)
class _Spec:
    """Everything static about one compiled search."""

    gen: stylegan.GeneratorConfig
    cfg: SearchConfig
    rows: int
    factor: int
    plan: NoisePlan

    @classmethod
    def make(cls, gen: stylegan.GeneratorConfig, cfg: SearchConfig, factor: int,
             platform: Optional[str] = None) -> "_Spec":
        """Derives the latent rows and the noise plan from the two configs, and resolves
        the "auto" settings for ``platform`` (default: JAX's default backend)."""
        rows = cfg.num_latent_rows or gen.num_layers
        if rows < gen.num_layers:
            raise ValueError(f"num_latent_rows {rows} < the generator's {gen.num_layers} layers")
        return cls(gen, cfg.resolved(platform), rows, factor, NoisePlan.make(cfg, gen.num_layers))

    @property
    def latent_rows(self) -> int:
        return 1 if self.cfg.tile_latent else self.rows


def _optimizer(spec: _Spec) -> optax.GradientTransformation:
    schedule = optim.make_schedule(spec.cfg.lr_schedule, spec.cfg.steps, spec.cfg.learning_rate)
    return optim.make_optimizer(spec.cfg.opt_name, schedule)


def _prepare(spec: _Spec, gen: Generator) -> dict:
    """What the steps read of the frozen generator, computed once per search: the synthesis
    params with their conv weight arithmetic done (:func:`stylegan.prepare_synthesis`) and
    the Gaussian fit."""
    return {"synthesis": stylegan.prepare_synthesis(spec.gen, gen.params["synthesis"],
                                                    spec.cfg.upconv),
            "mean": gen.gaussian_fit["mean"], "std": gen.gaussian_fit["std"]}


def _wplus(spec: _Spec, weights: dict, z: jax.Array) -> jax.Array:
    """Gaussianized W+ ``[B, rows, D]`` (tiled latents broadcast to all rows)."""
    z = jnp.broadcast_to(z, (z.shape[0], spec.rows, z.shape[2]))
    return gaussianize(z, weights["mean"], weights["std"])


def _noise_list(spec: _Spec, trainable: Sequence[jax.Array], frozen: Sequence[jax.Array],
                batch: int) -> list[jax.Array]:
    """All L noise maps as ``[B, r, r, 1]`` from the trainable/frozen ``[B, 1, r, r]`` ones."""
    out = []
    t, f = dict(zip(spec.plan.trainable, trainable)), dict(zip(spec.plan.frozen, frozen))
    for i, (r, _, _) in enumerate(spec.gen.noise_shapes):
        n = t.get(i, f.get(i))
        # [B, 1, r, r] -> [B, r, r, 1] is a pure reshape because the channel axis is 1.
        out.append(jnp.zeros((batch, r, r, 1), jnp.float32) if n is None else n.reshape(batch, r, r, 1))
    return out


def _forward(spec: _Spec, weights: dict, params: dict, frozen: tuple) -> tuple[jax.Array, jax.Array]:
    """(W+ ``[B, rows, D]``, image in ~[0, 1] ``[B, R, R, 3]``, unclamped)."""
    z = params["z"]
    wplus = _wplus(spec, weights, z)
    noises = _noise_list(spec, params["noise"], frozen, z.shape[0])
    L = spec.gen.num_layers
    raw = stylegan.Synthesis(spec.gen, remat=spec.cfg.remat, upconv=spec.cfg.upconv,
                             prepared=True).apply({"params": weights["synthesis"]},
                                                  wplus[:, :L], noises)
    return wplus, (raw + 1.0) / 2.0


def _loss_fn(spec: _Spec):
    return losses_lib.make_loss(spec.cfg.loss_str, spec.cfg.eps,
                                degrade_lib.make_degradation("bicubic", spec.factor))


def loss_and_grad(spec: _Spec, gen: Generator, params: dict, frozen: tuple, ref_lr: jax.Array):
    """Per-sample total loss ``[B]``, terms, and the gradient of their sum w.r.t. params."""
    return _loss_and_grad(spec, _prepare(spec, gen), params, frozen, ref_lr)


def _loss_and_grad(spec: _Spec, weights: dict, params: dict, frozen: tuple, ref_lr: jax.Array):
    loss = _loss_fn(spec)

    def total(p):
        wplus, img = _forward(spec, weights, p, frozen)
        tot, terms, _ = loss(img, ref_lr, wplus)
        return jnp.sum(tot), (tot, terms)

    (_, (tot, terms)), grads = jax.value_and_grad(total, has_aux=True)(params)
    return tot, terms, grads


def _draw(spec: _Spec, key: jax.Array) -> tuple[dict, tuple]:
    """One restart's initial params and frozen noise (no batch axis yet)."""
    width = spec.gen.dlatent_size
    kz, kn = jax.random.split(key)
    z = jax.random.normal(kz, (spec.latent_rows, width), jnp.float32)
    nkeys = jax.random.split(kn, spec.gen.num_layers)
    maps = {i: jax.random.normal(nkeys[i], (1, r, r), jnp.float32)
            for i, (r, _, _) in enumerate(spec.gen.noise_shapes)
            if i not in spec.plan.zero}
    params = {"z": z, "noise": tuple(maps[i] for i in spec.plan.trainable)}
    return params, tuple(maps[i] for i in spec.plan.frozen)


def _init_state(spec: _Spec, params: dict, frozen: tuple) -> SearchState:
    TRACE_COUNTS["init"] += 1
    B = params["z"].shape[0]
    opt_state = _optimizer(spec).init(params)
    return SearchState(
        params=params, opt_state=opt_state,
        radii=jax.tree_util.tree_map(optim.sphere_radii, params),
        frozen_noise=frozen,
        best_total=jnp.full((B,), jnp.inf, jnp.float32),
        best_l2=jnp.full((B,), jnp.inf, jnp.float32),
        best_step=jnp.full((B,), -1, jnp.int32),
        best_params=params, last_params=params,
        step=jnp.zeros((), jnp.int32))


def _select(mask: jax.Array, new, old):
    def pick(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        return jnp.where(m, a, b)
    return jax.tree_util.tree_map(pick, new, old)


def _step(spec: _Spec, weights: dict, ref_lr: jax.Array, state: SearchState) -> SearchState:
    opt = _optimizer(spec)
    tot, terms, grads = _loss_and_grad(spec, weights, state.params, state.frozen_noise, ref_lr)
    better = tot < state.best_total  # strict, NaN never wins, as in the reference
    new_params, opt_state = optim.spherical_update(opt, state.params, state.opt_state, grads,
                                                   state.radii)
    return state._replace(
        params=new_params, opt_state=opt_state,
        best_total=jnp.where(better, tot, state.best_total),
        best_l2=jnp.where(better, terms["L2"], state.best_l2),
        best_step=jnp.where(better, state.step, state.best_step),
        best_params=_select(better, state.params, state.best_params),
        last_params=state.params,
        step=state.step + 1)


def _run_steps(spec: _Spec, weights: dict, ref_lr: jax.Array, state: SearchState,
               n: jax.Array) -> SearchState:
    """``n`` steps in one compiled call (the "device" loop)."""
    TRACE_COUNTS["steps"] += 1
    with jax.default_matmul_precision(spec.cfg.precision):
        return jax.lax.fori_loop(0, n, lambda _, s: _step(spec, weights, ref_lr, s), state)


def _one_step(spec: _Spec, weights: dict, ref_lr: jax.Array, state: SearchState) -> SearchState:
    """One step as its own program (the "host" loop calls it ``n`` times)."""
    TRACE_COUNTS["steps"] += 1
    with jax.default_matmul_precision(spec.cfg.precision):
        return _step(spec, weights, ref_lr, state)


def _host_loop(step: Callable) -> Callable:
    """``run(weights, ref, state, n)`` as a Python loop over the compiled ``step``."""
    def run(weights, ref_lr, state, n):
        for _ in range(int(n)):
            state = step(weights, ref_lr, state)
        return state
    return run


class _Stages(NamedTuple):
    """The compiled programs of one search. ``prepare(gen)`` gives the weights that
    ``run(weights, ref, state, n)`` (``n`` steps with the configured loop) and
    ``finalize(weights, ref, state)`` read; ``step`` is the compiled program ``run`` calls
    (one step for the host loop, ``n`` steps for the device loop), for benchmarks."""

    draw: Callable
    init: Callable
    prepare: Callable
    run: Callable
    finalize: Callable
    step: Any


def _finalize(spec: _Spec, weights: dict, ref_lr: jax.Array, state: SearchState,
              n_faces: int) -> dict:
    """Render every restart's best iterate, score it, and pick each face's restart."""
    TRACE_COUNTS["finalize"] += 1
    restarts = spec.cfg.restarts
    downscale = degrade_lib.make_degradation("bicubic", spec.factor)
    with jax.default_matmul_precision(spec.cfg.precision):
        wplus, img = _forward(spec, weights, state.best_params, state.frozen_noise)
        if spec.cfg.return_image == "last":
            # The reference: HR of the last evaluated iterate, LR = clamp(D(best image)).
            _, last_img = _forward(spec, weights, state.last_params, state.frozen_noise)
            hr = jnp.clip(last_img, 0.0, 1.0)
            lr = jnp.clip(downscale(img), 0.0, 1.0)
        else:
            hr = jnp.clip(img, 0.0, 1.0)
            lr = downscale(hr)
        l2 = jnp.mean(jnp.square(lr - ref_lr), axis=(1, 2, 3))

    def per_face(x):
        return x.reshape((n_faces, restarts) + x.shape[1:])

    l2_fr, total_fr = per_face(l2), per_face(state.best_total)
    total_key = jnp.where(jnp.isnan(total_fr), jnp.inf, total_fr)
    if spec.cfg.select == "l2":
        key = l2_fr
    elif spec.cfg.select == "total":
        key = total_key
    else:  # successful restarts first (if a face has any), then by total loss
        ok = l2_fr <= spec.cfg.eps
        key = jnp.where(ok | ~jnp.any(ok, axis=1, keepdims=True), total_key, jnp.inf)
    choice = jnp.argmin(key, axis=1)
    take = lambda x: jnp.take_along_axis(
        per_face(x), choice.reshape((n_faces, 1) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    noises = _noise_list(spec, state.best_params["noise"], state.frozen_noise, l2.shape[0])
    out = {
        "hr": take(hr), "lr": take(lr), "l2": take(l2),
        "success": take(l2) <= spec.cfg.eps, "restart": choice,
        "restart_l2": l2_fr, "restart_total": total_fr,
        "restart_best_step": per_face(state.best_step),
        "latent": take(state.best_params["z"]), "wplus": take(wplus)[:, :spec.gen.num_layers],
        "noises": [take(n) for n in noises],
    }
    if spec.cfg.keep_restart_images:
        out["restart_hr"] = per_face(hr)
    return out


def _batched_specs(tree: Any, batch: int, axis: str) -> Any:
    """PartitionSpecs: leaves with a leading ``batch`` axis are split, scalars replicated."""
    P = jax.sharding.PartitionSpec
    return jax.tree_util.tree_map(
        lambda x: P(axis) if (x.ndim >= 1 and x.shape[0] == batch) else P(), tree)


@functools.lru_cache(maxsize=32)
def _stages(spec: _Spec, mesh: Optional[jax.sharding.Mesh], batch: int) -> _Stages:
    """The jitted stages for one spec and device layout.

    With a mesh, each stage runs under ``shard_map`` over its "faces" axis: every device
    runs the very program a single device runs on its own slice, so results do not depend
    on the number of devices, only on the per-device batch shape.
    """
    draw = lambda keys: jax.vmap(functools.partial(_draw, spec))(keys)
    init = functools.partial(_init_state, spec)
    host = spec.cfg.loop == "host"
    run = functools.partial(_one_step if host else _run_steps, spec)
    n_faces = batch // spec.cfg.restarts

    # Placed once where the steps read them: every device holds the weights.
    P = jax.sharding.PartitionSpec
    replicated = None if mesh is None else jax.sharding.NamedSharding(mesh, P())
    prepare = jax.jit(functools.partial(_prepare, spec), out_shardings=replicated)

    def stages(draw, init, run, fin):
        return _Stages(draw, init, prepare, _host_loop(run) if host else run, fin, run)

    if mesh is None:
        fin = lambda weights, ref, state: _finalize(spec, weights, ref, state, n_faces)
        return stages(jax.jit(draw), jax.jit(init), jax.jit(run, donate_argnums=2), jax.jit(fin))
    ndev = mesh.devices.size
    local = batch // ndev
    fin = lambda weights, ref, state: _finalize(spec, weights, ref, state, n_faces // ndev)
    key_shape = jax.eval_shape(lambda: restart_keys(0, [0], 1))
    params_shape = jax.eval_shape(draw, jax.ShapeDtypeStruct((local,) + key_shape.shape[1:],
                                                            key_shape.dtype))
    state_shape = jax.eval_shape(init, *params_shape)
    sspec = _batched_specs(state_shape, local, "faces")

    def smap(f, in_specs, out_specs):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)

    run_specs = (P(), P("faces"), sspec) if host else (P(), P("faces"), sspec, P())
    return stages(
        jax.jit(smap(draw, P("faces"), P("faces"))),
        jax.jit(smap(init, (P("faces"), P("faces")), sspec)),
        jax.jit(smap(run, run_specs, sspec), donate_argnums=2),
        jax.jit(smap(fin, (P(), P("faces"), sspec), P("faces"))),
    )


def restart_keys(seed: int, face_ids: Sequence[int], restarts: int) -> jax.Array:
    """``[N * restarts]`` keys: ``fold_in(fold_in(PRNGKey(seed), face_id), restart)``."""
    base = jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.fold_in(jax.random.fold_in(base, int(f)), r)
                      for f in face_ids for r in range(restarts)])


def _validate(generator: Generator, lr_images: np.ndarray) -> int:
    if generator.gaussian_fit is None:
        raise ValueError("the generator has no Gaussian fit; load one (gaussian_fit.pt) or "
                         "compute it with pulse_jax.weights.compute_gaussian_fit")
    if lr_images.ndim != 4 or lr_images.shape[-1] != generator.config.num_channels:
        raise ValueError(f"lr_images must be [N, S, S, {generator.config.num_channels}], "
                         f"got shape {lr_images.shape}")
    n, h, w, _ = lr_images.shape
    if n == 0:
        raise ValueError("lr_images holds no faces")
    if h != w:
        raise ValueError(f"lr_images must be square, got {h}x{w}")
    res = generator.config.resolution
    if res % h or h >= res:
        sizes = [res // f for f in range(2, res + 1) if res % f == 0]
        raise ValueError(f"LR size {h} does not divide the generator's resolution {res} by an "
                         f"integer factor > 1; valid sizes: {sorted(sizes)}")
    if not np.all(np.isfinite(lr_images)):
        raise ValueError("lr_images contains NaN or infinite values")
    lo, hi = float(lr_images.min()), float(lr_images.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"lr_images must be in [0, 1] (found values in [{lo:.3g}, {hi:.3g}]); "
                         "divide uint8 images by 255")
    return res // h


class Progress(NamedTuple):
    """What the progress callback receives after every chunk of steps."""

    step: int                 # steps done
    steps: int                # steps in total
    faces: tuple[int, int]    # (first, end) face indices of the chunk of faces in flight
    best_l2: np.ndarray       # [faces_in_chunk, restarts] best (clamped) L2 so far
    best_total: np.ndarray    # [faces_in_chunk, restarts]
    render: Callable[[], np.ndarray]  # -> [faces_in_chunk, R, R, 3] best-so-far image


def upsample(generator: Generator, lr_images: Any, config: SearchConfig = SearchConfig(),
             seed: int = 0, *, face_ids: Optional[Sequence[int]] = None,
             batch_size: Optional[int] = None,
             mesh: Optional[jax.sharding.Mesh] = None,
             progress: Optional[Callable[[Progress], None]] = None) -> Result:
    """Upsample faces with PULSE.

    Args:
      generator: a :class:`Generator` with a Gaussian fit.
      lr_images: ``[N, S, S, 3]`` in [0, 1], with ``S * factor = generator.resolution``.
      config: the :class:`SearchConfig`.
      seed: base of every restart's PRNG key (seed 0 is a seed like any other).
      face_ids: per-face ids for the keys (default ``0..N-1``); give a face the same id to
        get the same starts wherever it appears.
      batch_size: faces per compiled call. Faces are processed in chunks of this size and
        the last chunk is padded, so a face's result is bitwise independent of how many
        faces were requested. Default: all N faces in one call. With a ``mesh`` this is
        the number of faces per device.
      mesh: optional device mesh with an axis named "faces"; each call then takes
        ``batch_size * mesh.size`` faces, split over the devices (the generator is
        replicated). Results equal a single device's with the same ``batch_size``.
      progress: called with a :class:`Progress` after every ``config.chunk_steps`` steps.

    Returns:
      A :class:`Result` of numpy arrays.
    """
    lr_images = np.asarray(lr_images, np.float32)
    factor = _validate(generator, lr_images)
    n = lr_images.shape[0]
    face_ids = list(range(n)) if face_ids is None else [int(f) for f in face_ids]
    if len(face_ids) != n:
        raise ValueError(f"face_ids has {len(face_ids)} entries for {n} faces")
    ndev = 1 if mesh is None else mesh.devices.size
    if mesh is not None and mesh.axis_names != ("faces",):
        raise ValueError(f"mesh must have the single axis 'faces', got {mesh.axis_names}")
    per_device = -(-n // ndev) if batch_size is None else int(batch_size)
    if per_device < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    bs = per_device * ndev
    platform = None if mesh is None else mesh.devices.flat[0].platform
    spec = _Spec.make(generator.config, config, factor, platform)
    stages = _stages(spec, mesh, bs * spec.cfg.restarts)
    weights = stages.prepare(generator)  # once for every chunk of faces
    parts = []
    for start in range(0, n, bs):
        stop = min(start + bs, n)
        idx = list(range(start, stop)) + [stop - 1] * (bs - (stop - start))  # pad with copies
        out = _search_chunk(spec, stages, weights, lr_images[idx], [face_ids[i] for i in idx],
                            seed, (start, stop), progress, mesh)
        parts.append(jax.tree_util.tree_map(lambda x: np.asarray(x)[: stop - start], out))
    merged = jax.tree_util.tree_map(lambda *xs: np.concatenate(xs), *parts)
    return Result(**merged, seed=seed, face_ids=np.asarray(face_ids))


def _search_chunk(spec: _Spec, stages: _Stages, weights: dict, lr: np.ndarray, ids: list[int],
                  seed: int, faces: tuple[int, int], progress, mesh) -> dict:
    restarts, steps = spec.cfg.restarts, spec.cfg.steps
    nf, real = len(ids), faces[1] - faces[0]
    draw, init, run, finalize = stages.draw, stages.init, stages.run, stages.finalize
    ref = np.repeat(lr, restarts, axis=0)
    # Placed once, as the steps take it, so the host loop does not move it at every step.
    ref = jax.device_put(ref, None if mesh is None else jax.sharding.NamedSharding(
        mesh, jax.sharding.PartitionSpec("faces")))
    state = init(*draw(restart_keys(seed, ids, restarts)))
    done = 0
    while done < steps:
        k = min(spec.cfg.chunk_steps, steps - done)
        state = run(weights, ref, state, jnp.int32(k))
        done += k
        if progress is not None:
            cur = state

            def render(cur=cur):
                return np.asarray(finalize(weights, ref, cur)["hr"])[:real]

            progress(Progress(done, steps, faces,
                              np.asarray(cur.best_l2).reshape(nf, restarts)[:real],
                              np.asarray(cur.best_total).reshape(nf, restarts)[:real], render))
    return finalize(weights, ref, state)
