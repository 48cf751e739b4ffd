"""What a PULSE search is asked to do: :class:`SearchConfig`, validated when built.

Fields named as the reference's ``run.py`` flags keep its defaults (docs/reference.md,
"run.py flags and defaults"); the others are ours, each documented on the class. A
``SearchConfig`` that constructs is one the search can run: unknown names, bad loss
strings, optimizers and schedules fail here, not inside the compiled search.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional

import jax

from pulse_jax import losses as losses_lib
from pulse_jax import optim
from pulse_jax.stylegan import convs, network as v1_network

__all__ = ["EPILOGUES", "LOOPS", "NOISE_TYPES", "NoisePlan", "RETURN_IMAGES", "SELECT_RULES", "SPHERE_RADII",
           "SearchConfig", "UPCONVS", "effective_epilogue", "parse_bad_noise_layers"]

NOISE_TYPES = ("zero", "fixed", "trainable")
RETURN_IMAGES = ("best", "last")
SELECT_RULES = ("success_then_total", "total", "l2")
LOOPS = ("auto", "host", "device")
SPHERE_RADII = ("initial", "sqrt_dim")
UPCONVS = ("auto",) + convs.UPCONVS
EPILOGUES = ("auto",) + v1_network.EPILOGUES

# What "auto" means per platform (benchmarks/search_bench.py; docs/performance.md has why).
_AUTO = {"cpu": {"loop": "host", "upconv": "subpixel", "epilogue": "fused_large"}}
_AUTO_OTHER = {"loop": "device", "upconv": "direct", "epilogue": "autodiff"}


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
      epilogue: how the gradient of each layer's epilogue (noise, LeakyReLU, instance norm,
        style) is computed: "autodiff", "fused" (written out: fewer passes over the
        activations), "fused_large" (fused in the blocks of 128x128 and up: 13% off a
        1024 CPU step) or "auto" (fused_large on CPU, autodiff elsewhere). Below 128x128,
        e.g. the whole shipped 64x64 model, every choice but "fused" is autodiff's
        arithmetic, so its pinned results and config hashes stay as they were.
      ``loop``, ``upconv`` and ``epilogue`` change speed, not the result beyond float
      rounding; since the search is chaotic, the bits of a run do depend on them (and on
      the platform).
      sphere_radius: the sphere each latent row and noise map is kept on: "initial" (the
        reference: the norm of its random start, about sqrt(d)) or "sqrt_dim" (exactly
        sqrt(d), d the row's size, as the paper describes; the start is projected there
        first). docs/reference.md, "The sphere's radius", has the measured difference.
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
    sphere_radius: str = "initial"
    epilogue: str = "auto"

    def __post_init__(self):
        if self.noise_type not in NOISE_TYPES:
            raise ValueError(f"unknown noise_type {self.noise_type!r}; use one of {NOISE_TYPES}")
        if self.return_image not in RETURN_IMAGES:
            raise ValueError(f"return_image must be one of {RETURN_IMAGES}, got {self.return_image!r}")
        if self.select not in SELECT_RULES:
            raise ValueError(f"select must be one of {SELECT_RULES}, got {self.select!r}")
        if self.sphere_radius not in SPHERE_RADII:
            raise ValueError(f"sphere_radius must be one of {SPHERE_RADII}, got "
                             f"{self.sphere_radius!r}")
        if self.loop not in LOOPS:
            raise ValueError(f"loop must be one of {LOOPS}, got {self.loop!r}")
        if self.upconv not in UPCONVS:
            raise ValueError(f"upconv must be one of {UPCONVS}, got {self.upconv!r}")
        if self.epilogue not in EPILOGUES:
            raise ValueError(f"epilogue must be one of {EPILOGUES}, got {self.epilogue!r}")
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
        """This config with "auto" ``loop``/``upconv``/``epilogue`` replaced by the choice
        for ``platform`` ("cpu", "gpu", "tpu"; default: JAX's default backend)."""
        auto = _AUTO.get(platform or jax.default_backend(), _AUTO_OTHER)
        return dataclasses.replace(self, **{k: auto[k] for k in auto if getattr(self, k) == "auto"})


def effective_epilogue(epilogue: str, generator_config) -> str:
    """What a resolved ``epilogue`` does for a generator: "autodiff" wherever no layer of it
    would be fused (StyleGAN2, which has no instance norm, or "fused_large" on a generator
    below 128x128), else ``epilogue`` itself."""
    if getattr(generator_config, "family", None) != "stylegan":
        return "autodiff"
    if epilogue == "fused_large" and (generator_config.resolution
                                      < v1_network.FUSED_EPILOGUE_MIN_RESOLUTION):
        return "autodiff"
    return epilogue


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
