"""pulse-jax: PULSE generative-prior face super-resolution in JAX/Flax.

PULSE (Menon et al., CVPR 2020) finds, for a tiny face, latents of a frozen StyleGAN v1 whose
image downscales back to it, by projected gradient descent on spheres from random starts::

    import pulse_jax
    gen = pulse_jax.default_generator()          # offline 64x64 model; or load_generator(path)
    res = pulse_jax.upsample(gen, lr_images, pulse_jax.SearchConfig(restarts=4), seed=0)
    res.hr, res.lr, res.l2, res.success          # [N,R,R,3], [N,S,S,3], [N], [N]

Modules: ``stylegan`` (the StyleGAN v1 generator, pure functions of params; its convolutions,
direct and sub-pixel upsampling and prepared kernels, in ``stylegan.convs``), ``stylegan2``
(NVIDIA's StyleGAN2, the second generator family; ``families`` says what a family module
provides and dispatches on a config's family), ``generator`` (the ``Generator`` pytree),
``degrade`` (the reference's bicubic downscale and the other forward models: blur, gray,
masks, noise; ``degrade.parse``), ``losses`` (L2, L1, GEOCROSS, loss strings), ``optim``
(sphere projection, torch-semantics optimizers, PULSE's schedules), ``search`` (the PULSE
loop: its settings in ``search.config``, its checks, its pure steps and their compiled
stages), ``weights`` (safe import of PULSE's .pt and NVIDIA's .pkl, our checkpoints, the
Gaussian fit, where weights are found), ``inputs`` (finding input files), ``images`` (image
files in and out), ``pictures`` (contact sheets, grids), ``files`` (atomic writes, JSON
lines, checksums, safe names), ``batch`` (many faces, many devices: a package, one module
per step; with ``devices``), ``run_config`` and ``cli`` (the
``pulse-jax`` command), ``train`` (a StyleGAN v1 trainer for your own data), ``host_memory``
(how malloc treats XLA:CPU's scratch memory; set at import, before JAX starts).
"""

# First, before anything can start JAX's CPU backend: how malloc treats XLA:CPU's per-step
# scratch memory (pulse_jax.host_memory; PULSE_JAX_HOST_MALLOC=system leaves it alone).
from pulse_jax import host_memory as _host_memory

_host_memory.configure()

from pulse_jax.generator import Generator, random_generator  # noqa: E402
from pulse_jax.stylegan import GeneratorConfig  # noqa: E402
from pulse_jax.stylegan2 import StyleGAN2Config  # noqa: E402
from pulse_jax.weights import default_generator, load_generator, save_generator  # noqa: E402
from pulse_jax.search import Result, SearchConfig, upsample  # noqa: E402

__all__ = ["Generator", "GeneratorConfig", "Result", "SearchConfig", "StyleGAN2Config",
           "default_generator", "load_generator", "random_generator", "save_generator",
           "upsample"]
