"""Getting NVIDIA's FFHQ generator onto a machine that has a network (e.g. a Colab runtime):
download its StyleGAN v1 pickle, convert it once into the cache, load it from there after.

:func:`ffhq_generator` is what a notebook calls; :func:`save_converted` is the conversion's
last step, shared with ``pulse-jax convert``: a Gaussian fit computed from the mapping network
when the weights came without one, then the checkpoint written with its sources.
"""

from __future__ import annotations

import os
import pathlib
import urllib.request
from typing import Callable, Sequence

from pulse_jax.generator import Generator

__all__ = ["FFHQ_PICKLE", "FFHQ_URLS", "download", "ffhq_generator", "save_converted"]

FFHQ_PICKLE = "karras2019stylegan-ffhq-1024x1024.pkl"
# NVlabs/stylegan's README lists the pickle on Google Drive; NVIDIA's CDN serves StyleGAN's
# networks folder too (NVlabs/stylegan2 loads StyleGAN's networks from it). The CDN is tried
# first (no Drive quota); Drive needs gdown (Colab has it) for its large-file confirmation.
FFHQ_URLS = (
    f"https://nvlabs-fi-cdn.nvidia.com/stylegan/networks/{FFHQ_PICKLE}",
    "https://drive.google.com/uc?id=1MEGjdvVpUsu1jB4zrXZN7Y4kBBOzizDQ",
)


def download(urls: Sequence[str], target: os.PathLike,
             log: Callable[[str], None] = print) -> pathlib.Path:
    """``target``, fetched from the first of ``urls`` that works (written as ``.part`` until
    complete, so an interrupted download is never taken for the file). OSError if none does."""
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for url in urls:
        log(f"downloading {url}")
        try:
            if "drive.google.com" in url:
                import gdown
                if gdown.download(url, str(part), quiet=False) is None:
                    raise OSError("gdown returned nothing")
            else:
                urllib.request.urlretrieve(url, part)
        except Exception as err:  # noqa: BLE001 - any failure: try the next address
            log(f"  failed: {err}")
            continue
        part.replace(target)
        return target
    raise OSError(f"could not download {target.name} from {list(urls)}; checkpoints/README.md "
                  "lists other routes (PULSE's synthesis.pt)")


def save_converted(gen: Generator, output: os.PathLike, sources: Sequence[dict] = (), *,
                   fit_samples: int = 1_000_000, fit_seed: int = 0, dtype: str = "float32",
                   log: Callable[[str], None] = print) -> Generator:
    """Writes an imported generator as a checkpoint at ``output``, computing its Gaussian fit
    from ``fit_samples`` mapping samples first if it has none (ValueError if it has no
    mapping network either). Returns the generator as saved."""
    import jax
    from pulse_jax import weights
    extra = {}
    if gen.gaussian_fit is None:
        if not gen.has_mapping:
            raise ValueError("no Gaussian fit: give --gaussian_fit=gaussian_fit.pt, or "
                             "--mapping=mapping.pt to compute one")
        log(f"computing the Gaussian fit from {fit_samples:,} mapping samples "
            f"(seed {fit_seed}) ...")
        fit = weights.compute_gaussian_fit(gen.config, gen.params["mapping"],
                                           jax.random.PRNGKey(fit_seed),
                                           num_samples=fit_samples)
        gen = gen.replace_gaussian_fit(fit["mean"], fit["std"])
        extra["gaussian_fit"] = {"computed": True, "num_samples": fit_samples,
                                 "seed": fit_seed}
    weights.save_generator(gen, output, sources=sources, dtype=dtype, extra=extra,
                           overwrite=True)
    return gen


def ffhq_generator(cache_dir: str = "", urls: Sequence[str] = FFHQ_URLS,
                   log: Callable[[str], None] = print,
                   fit_samples: int = 1_000_000) -> Generator:
    """NVIDIA's FFHQ 1024 generator from the cache (:func:`pulse_jax.weights.ffhq_checkpoint`);
    the first time, its pickle is downloaded into ``{cache}/downloads`` and converted in this
    process (a second process could not use the accelerator this one holds)."""
    from pulse_jax import weights
    ckpt = weights.ffhq_checkpoint(cache_dir)
    if not ckpt.exists():
        pkl = weights.cache_home(cache_dir) / "downloads" / FFHQ_PICKLE
        if not pkl.exists():
            download(urls, pkl, log)
        gen = weights.import_nvidia(pkl)
        save_converted(gen, ckpt, [weights.source_record(pkl, "nvidia_pickle")],
                       fit_samples=fit_samples, log=log)
        log(f"converted into {ckpt}")
    return weights.load_generator(ckpt)
