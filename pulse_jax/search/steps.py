"""The pure pieces of the PULSE search, one batch of ``B = faces x restarts`` rows: random
starts, the state, one projected step, the loss and its gradient, and the final choice of
each face's restart. :mod:`pulse_jax.search.stages` compiles them for a device layout.

A :class:`Spec` holds everything static about one search (generator config, resolved
:class:`~pulse_jax.search.config.SearchConfig`, latent rows, downscale factor, noise plan).
The functions here, for a spec:

* ``draw(key) -> (params, frozen_noise)``: one restart's random start;
* ``init_state(params, frozen) -> SearchState``;
* ``prepare(generator) -> weights``: the frozen generator's weight arithmetic, done once;
* ``step(weights, ref, state) -> state``: one projected step;
* ``finalize(weights, ref, state, n_faces) -> dict``: each face's chosen restart and images.

``ref`` is what the search matches: a :class:`~pulse_jax.degrade.Observation` (the
observation and, per row, the operator that made it). A plain array ``[B, S, S, 3]`` is the
default operator's observation, the reference's bicubic downscale by ``spec.factor``
(:func:`as_observation`), so the loss and the final scores read one representation.

Shapes carry a leading ``B`` axis unless noted. A step (docs/reference.md, "One
iteration")::

    z -> w+ = LeakyReLU_0.2(z * std + mean) -> gen = (synthesis(w+, noise) + 1) / 2
      -> A(gen) -> loss = sum_k weight_k * term_k -> grad -> inner optimizer step
      -> project z rows and trainable noise to their radii
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from pulse_jax import degrade as degrade_lib
from pulse_jax import families
from pulse_jax import losses as losses_lib
from pulse_jax import optim
from pulse_jax.search import variability
from pulse_jax.families import AnyConfig
from pulse_jax.generator import Generator
from pulse_jax.search.config import NoisePlan, SearchConfig, effective_epilogue
from pulse_jax.stylegan.layers import lrelu

__all__ = [
    "SearchState", "Spec", "as_observation", "draw", "finalize", "forward", "gaussianize",
    "init_state", "loss_and_grad", "observation_space", "prepare", "restart_keys", "step",
]


def gaussianize(z: jax.Array, mean: jax.Array, std: jax.Array) -> jax.Array:
    """PULSE's latent map ``LeakyReLU_0.2(z * std + mean)``; z ``[..., D]``."""
    return lrelu(z * std + mean)


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


@dataclasses.dataclass(frozen=True)
class Spec:
    """Everything static about one compiled search."""

    gen: AnyConfig
    cfg: SearchConfig
    rows: int
    factor: int
    plan: NoisePlan

    @classmethod
    def make(cls, gen: AnyConfig, cfg: SearchConfig, factor: int,
             platform: Optional[str] = None) -> "Spec":
        """Derives the latent rows and the noise plan from the two configs, and resolves
        the "auto" settings for ``platform`` (default: JAX's default backend) and the
        epilogue to what it does for this generator (:func:`effective_epilogue`)."""
        rows = cfg.num_latent_rows or gen.num_layers
        if rows < gen.num_layers:
            raise ValueError(f"num_latent_rows {rows} < the generator's {gen.num_layers} layers")
        resolved = cfg.resolved(platform)
        resolved = dataclasses.replace(resolved, epilogue=effective_epilogue(resolved.epilogue, gen))
        return cls(gen, resolved, rows, factor, NoisePlan.make(cfg, len(gen.noise_shapes)))

    @property
    def latent_rows(self) -> int:
        return 1 if self.cfg.tile_latent else self.rows


def optimizer(spec: Spec) -> optax.GradientTransformation:
    schedule = optim.make_schedule(spec.cfg.lr_schedule, spec.cfg.steps, spec.cfg.learning_rate)
    return optim.make_optimizer(spec.cfg.opt_name, schedule)


def prepare(spec: Spec, gen: Generator) -> dict:
    """What the steps read of the frozen generator, computed once per search: the synthesis
    params (the family's ``prepare_synthesis``) and the Gaussian fit."""
    family = families.module_for(spec.gen)
    return {"synthesis": family.prepare_synthesis(spec.gen, gen.params["synthesis"],
                                                  spec.cfg.upconv),
            "mean": gen.gaussian_fit["mean"], "std": gen.gaussian_fit["std"]}


def gaussian_wplus(spec: Spec, weights: dict, z: jax.Array) -> jax.Array:
    """Gaussianized W+ ``[B, rows, D]`` (tiled latents broadcast to all rows)."""
    z = jnp.broadcast_to(z, (z.shape[0], spec.rows, z.shape[2]))
    return gaussianize(z, weights["mean"], weights["std"])


def noise_list(spec: Spec, trainable: Sequence[jax.Array], frozen: Sequence[jax.Array],
                batch: int) -> list[jax.Array]:
    """All noise maps (one per ``noise_shapes`` entry) as ``[B, r, r, 1]`` from the
    trainable/frozen ``[B, 1, r, r]`` ones."""
    out = []
    t, f = dict(zip(spec.plan.trainable, trainable)), dict(zip(spec.plan.frozen, frozen))
    for i, (r, _, _) in enumerate(spec.gen.noise_shapes):
        n = t.get(i, f.get(i))
        # [B, 1, r, r] -> [B, r, r, 1] is a pure reshape because the channel axis is 1.
        out.append(jnp.zeros((batch, r, r, 1), jnp.float32) if n is None else n.reshape(batch, r, r, 1))
    return out


def forward(spec: Spec, weights: dict, params: dict, frozen: tuple) -> tuple[jax.Array, jax.Array]:
    """(W+ ``[B, rows, D]``, image in ~[0, 1] ``[B, R, R, 3]``, unclamped)."""
    z = params["z"]
    wplus = gaussian_wplus(spec, weights, z)
    noises = noise_list(spec, params["noise"], frozen, z.shape[0])
    L = spec.gen.num_layers
    raw = families.module_for(spec.gen).synthesis_prepared(
        spec.gen, weights["synthesis"], wplus[:, :L], noises, remat=spec.cfg.remat,
        upconv=spec.cfg.upconv, epilogue=spec.cfg.epilogue)
    return wplus, (raw + 1.0) / 2.0


def as_observation(spec: Spec, ref_lr: Any) -> degrade_lib.Observation:
    """``ref_lr`` as the steps read it: an :class:`~pulse_jax.degrade.Observation` as it is;
    a plain array ``[B, S, S, 3]`` as the observation of the default operator, the
    reference's bicubic downscale by ``spec.factor`` (``tests/test_search_default.py`` pins
    that its results keep the bits they had when the default had a code path of its own)."""
    return degrade_lib.as_observation(ref_lr, degrade_lib.downscale(spec.factor, "bicubic"))


def loss_and_grad(spec: Spec, gen: Generator, params: dict, frozen: tuple, ref_lr: Any):
    """Per-sample total loss ``[B]``, terms, and the gradient of their sum w.r.t. params;
    ``ref_lr`` an Observation or a plain array (:func:`as_observation`)."""
    return prepared_loss_and_grad(spec, prepare(spec, gen), params, frozen, ref_lr)


def prepared_loss_and_grad(spec: Spec, weights: dict, params: dict, frozen: tuple, ref_lr: Any):
    loss = losses_lib.make_loss(spec.cfg.loss_str, spec.cfg.eps)
    ref = as_observation(spec, ref_lr)

    def total(p):
        wplus, img = forward(spec, weights, p, frozen)
        tot, terms, _ = loss(img, ref, wplus)
        return jnp.sum(tot), (tot, terms)

    (_, (tot, terms)), grads = jax.value_and_grad(total, has_aux=True)(params)
    return tot, terms, grads


def draw(spec: Spec, key: jax.Array) -> tuple[dict, tuple]:
    """One restart's initial params and frozen noise (no batch axis yet)."""
    width = spec.gen.dlatent_size
    kz, kn = jax.random.split(key)
    z = jax.random.normal(kz, (spec.latent_rows, width), jnp.float32)
    nkeys = jax.random.split(kn, len(spec.gen.noise_shapes))
    maps = {i: jax.random.normal(nkeys[i], (1, r, r), jnp.float32)
            for i, (r, _, _) in enumerate(spec.gen.noise_shapes)
            if i not in spec.plan.zero}
    params = {"z": z, "noise": tuple(maps[i] for i in spec.plan.trainable)}
    return params, tuple(maps[i] for i in spec.plan.frozen)


def init_state(spec: Spec, params: dict, frozen: tuple) -> SearchState:
    B = params["z"].shape[0]
    if spec.cfg.sphere_radius == "sqrt_dim":
        # One projection for both choices (the reference's, with its 1e-9 under the root),
        # so "sqrt_dim" differs from the reference only in the radius.
        radii = jax.tree_util.tree_map(optim.dim_radii, params)
        params = jax.tree_util.tree_map(optim.project, params, radii)
    else:
        radii = jax.tree_util.tree_map(optim.sphere_radii, params)
    opt_state = optimizer(spec).init(params)
    return SearchState(
        params=params, opt_state=opt_state,
        radii=radii,
        frozen_noise=frozen,
        best_total=jnp.full((B,), jnp.inf, jnp.float32),
        best_l2=jnp.full((B,), jnp.inf, jnp.float32),
        best_step=jnp.full((B,), -1, jnp.int32),
        best_params=params, last_params=params,
        step=jnp.zeros((), jnp.int32))


def select_where(mask: jax.Array, new, old):
    def pick(a, b):
        m = mask.reshape(mask.shape + (1,) * (a.ndim - 1))
        return jnp.where(m, a, b)
    return jax.tree_util.tree_map(pick, new, old)


def step(spec: Spec, weights: dict, ref_lr: Any, state: SearchState) -> SearchState:
    opt = optimizer(spec)
    tot, terms, grads = prepared_loss_and_grad(spec, weights, state.params, state.frozen_noise, ref_lr)
    better = tot < state.best_total  # strict, NaN never wins, as in the reference
    new_params, opt_state = optim.spherical_update(opt, state.params, state.opt_state, grads,
                                                   state.radii)
    return state._replace(
        params=new_params, opt_state=opt_state,
        best_total=jnp.where(better, tot, state.best_total),
        best_l2=jnp.where(better, terms["L2"], state.best_l2),
        best_step=jnp.where(better, state.step, state.best_step),
        best_params=select_where(better, state.params, state.best_params),
        last_params=state.params,
        step=state.step + 1)


def observation_space(spec: Spec, ref_lr: Any) -> tuple[Callable, Callable, jax.Array]:
    """``(A, l2, eps)`` for a reference (:func:`as_observation`): the operator to the
    observation space, the per-row l2 ``[B]`` of an observed image against the reference,
    and the success threshold ``[B]`` (eps, plus sigma^2 with a noise model;
    docs/degradations.md)."""
    obs = as_observation(spec, ref_lr)
    eps = spec.cfg.eps + obs.noise_variance()
    return obs.apply, obs.mse, jnp.broadcast_to(eps, obs.y.shape[:1])


def finalize(spec: Spec, weights: dict, ref_lr: Any, state: SearchState,
              n_faces: int) -> dict:
    """Render every restart's best iterate, score it, and pick each face's restart."""
    restarts = spec.cfg.restarts
    downscale, l2_of, eps = observation_space(spec, ref_lr)
    with jax.default_matmul_precision(spec.cfg.precision):
        wplus, img = forward(spec, weights, state.best_params, state.frozen_noise)
        if spec.cfg.return_image == "last":
            # The reference: HR of the last evaluated iterate, LR = clamp(D(best image)).
            _, last_img = forward(spec, weights, state.last_params, state.frozen_noise)
            hr = jnp.clip(last_img, 0.0, 1.0)
            lr = jnp.clip(downscale(img), 0.0, 1.0)
        else:
            hr = jnp.clip(img, 0.0, 1.0)
            lr = downscale(hr)
        l2 = l2_of(lr)

    def per_face(x):
        return x.reshape((n_faces, restarts) + x.shape[1:])

    l2_fr, total_fr = per_face(l2), per_face(state.best_total)
    total_key = jnp.where(jnp.isnan(total_fr), jnp.inf, total_fr)
    if spec.cfg.select == "l2":
        key = l2_fr
    elif spec.cfg.select == "total":
        key = total_key
    else:  # successful restarts first (if a face has any), then by total loss
        ok = l2_fr <= per_face(eps)
        key = jnp.where(ok | ~jnp.any(ok, axis=1, keepdims=True), total_key, jnp.inf)
    choice = jnp.argmin(key, axis=1)
    take = lambda x: jnp.take_along_axis(
        per_face(x), choice.reshape((n_faces, 1) + (1,) * (x.ndim - 1)), axis=1)[:, 0]
    noises = noise_list(spec, state.best_params["noise"], state.frozen_noise, l2.shape[0])
    out = {
        "hr": take(hr), "lr": take(lr), "l2": take(l2),
        "success": take(l2) <= take(eps),
        "restart": choice,
        "restart_l2": l2_fr, "restart_total": total_fr,
        "restart_best_step": per_face(state.best_step),
        "latent": take(state.best_params["z"]), "wplus": take(wplus)[:, :spec.gen.num_layers],
        "noises": [take(n) for n in noises],
    }
    if spec.cfg.keep_restart_images:
        out["restart_hr"] = per_face(hr)
        if restarts > 1:
            out["variability"], out["variability_restarts"] = variability.spread(
                out["restart_hr"], l2_fr <= per_face(eps))
    return out


def restart_keys(seed: int, face_ids: Sequence[int], restarts: int) -> jax.Array:
    """``[N * restarts]`` keys: ``fold_in(fold_in(PRNGKey(seed), face_id), restart)``."""
    base = jax.random.PRNGKey(seed)
    return jnp.stack([jax.random.fold_in(jax.random.fold_in(base, int(f)), r)
                      for f in face_ids for r in range(restarts)])
