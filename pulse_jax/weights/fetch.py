"""Getting NVIDIA's FFHQ generator onto a machine that has a network (e.g. a Colab runtime):
download its StyleGAN v1 pickle, check its SHA-256, convert it once into the cache, load it
from there after.

:func:`ffhq_generator` is what a notebook calls; :func:`save_converted` is the conversion's
last step, shared with ``pulse-jax convert``: a Gaussian fit computed from the mapping network
when the weights came without one, then the checkpoint written with its sources. Only the
pickle is downloaded (the Gaussian fit is computed, never fetched).
"""

from __future__ import annotations

import os
import pathlib
import urllib.request
from typing import Callable, Optional, Sequence

import jax

from pulse_jax import files
from pulse_jax.generator import Generator

from .checkpoint import load_generator, save_generator
from .gaussian_fit import compute_gaussian_fit
from .importers import import_nvidia, source_record
from .locate import cache_home, ffhq_checkpoint

__all__ = ["DownloadError", "FFHQ_PICKLE", "FFHQ_SHA256", "FFHQ_URLS", "download",
           "ffhq_generator", "save_converted"]

FFHQ_PICKLE = "karras2019stylegan-ffhq-1024x1024.pkl"
# NVlabs/stylegan's README lists the pickle on Google Drive; NVIDIA's CDN serves StyleGAN's
# networks folder too (NVlabs/stylegan2 loads StyleGAN's networks from it). The CDN is tried
# first (no Drive quota); Drive needs gdown (Colab has it) for its large-file confirmation.
FFHQ_URLS = (
    f"https://nvlabs-fi-cdn.nvidia.com/stylegan/networks/{FFHQ_PICKLE}",
    "https://drive.google.com/uc?id=1MEGjdvVpUsu1jB4zrXZN7Y4kBBOzizDQ",
)
# NVIDIA publishes no checksum for the pickle. This SHA-256 (of 324,733,157 bytes, the
# "about 300 MB" file) is the Git LFS object id of a mirror's copy of the same file name:
# github.com/yypylypiv0422/babygan, commit b6346459396027ae7029468e7fba1098bb279030, file
# karras2019stylegan-ffhq-1024x1024.pkl (an LFS pointer whose oid is the content's
# SHA-256). checkpoints/README.md says the same.
FFHQ_SHA256 = "f277a43711447812d809b2fdd7748b945cfd7bdcd391d66e557a68d590309aab"


class DownloadError(OSError):
    """No address gave the file, or what was downloaded twice did not have its SHA-256
    (nothing is left at the target then)."""


def _fetch(urls: Sequence[str], part: pathlib.Path, log: Callable[[str], None]) -> bool:
    """Fetches the first of ``urls`` that works into ``part``; False if none does."""
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
            part.unlink(missing_ok=True)
            continue
        return True
    return False


def download(urls: Sequence[str], target: os.PathLike, log: Callable[[str], None] = print,
             sha256: Optional[str] = None) -> pathlib.Path:
    """``target``, fetched from the first of ``urls`` that works (written as ``.part`` until
    complete and checked, so an interrupted or corrupt download is never taken for the file).

    With ``sha256``, a download without that digest is deleted and fetched once more; a
    second mismatch raises DownloadError and leaves no file. DownloadError (an OSError) also
    when no address works.
    """
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    for attempt in (1, 2):
        if not _fetch(urls, part, log):
            raise DownloadError(f"could not download {target.name} from {list(urls)}; "
                                "checkpoints/README.md lists other routes (PULSE's "
                                "synthesis.pt)")
        got = files.sha256_file(part) if sha256 else ""
        if got == (sha256 or "").lower():
            part.replace(target)
            return target
        part.unlink()
        log(f"  {target.name}: SHA-256 {got} is not the expected {sha256}: deleted"
            + ("; downloading it again" if attempt == 1 else ""))
    raise DownloadError(f"{target.name}: two downloads from {list(urls)} did not have the "
                        f"expected SHA-256 {sha256} (the last had {got}); nothing was kept. "
                        "A changed file or a failing mirror: download it by hand and run "
                        "`pulse-jax convert` (checkpoints/README.md)")


def _checked_or_removed(path: pathlib.Path, sha256: Optional[str],
                        log: Callable[[str], None]) -> None:
    """Deletes ``path`` if it exists without the expected digest (it is fetched again)."""
    if sha256 and path.exists():
        got = files.sha256_file(path)
        if got != sha256.lower():
            log(f"{path}: SHA-256 {got} is not the expected {sha256}: deleted")
            path.unlink()


def save_converted(gen: Generator, output: os.PathLike, sources: Sequence[dict] = (), *,
                   fit_samples: int = 1_000_000, fit_seed: int = 0, dtype: str = "float32",
                   log: Callable[[str], None] = print) -> Generator:
    """Writes an imported generator as a checkpoint at ``output``, computing its Gaussian fit
    from ``fit_samples`` mapping samples first if it has none (ValueError if it has no
    mapping network either). Returns the generator as saved."""
    extra = {}
    if gen.gaussian_fit is None:
        if not gen.has_mapping:
            raise ValueError("no Gaussian fit: give --gaussian_fit=gaussian_fit.pt, or "
                             "--mapping=mapping.pt to compute one")
        log(f"computing the Gaussian fit from {fit_samples:,} mapping samples "
            f"(seed {fit_seed}) ...")
        fit = compute_gaussian_fit(gen.config, gen.params["mapping"], jax.random.PRNGKey(fit_seed),
                                   num_samples=fit_samples)
        gen = gen.replace_gaussian_fit(fit["mean"], fit["std"])
        extra["gaussian_fit"] = {"computed": True, "num_samples": fit_samples,
                                 "seed": fit_seed}
    save_generator(gen, output, sources=sources, dtype=dtype, extra=extra, overwrite=True)
    return gen


def ffhq_generator(cache_dir: str = "", urls: Sequence[str] = FFHQ_URLS,
                   log: Callable[[str], None] = print, fit_samples: int = 1_000_000,
                   sha256: Optional[str] = FFHQ_SHA256) -> Generator:
    """NVIDIA's FFHQ 1024 generator from the cache (:func:`pulse_jax.weights.ffhq_checkpoint`);
    the first time, its pickle is downloaded into ``{cache}/downloads``, checked against
    ``sha256`` (:data:`FFHQ_SHA256`; None skips the check), and converted in this process (a
    second process could not use the accelerator this one holds). A pickle already in the
    downloads folder is checked too and fetched again if it differs. DownloadError when
    no good copy can be had."""
    ckpt = ffhq_checkpoint(cache_dir)
    if not ckpt.exists():
        pkl = cache_home(cache_dir) / "downloads" / FFHQ_PICKLE
        _checked_or_removed(pkl, sha256, log)
        if not pkl.exists():
            download(urls, pkl, log, sha256=sha256)
        gen = import_nvidia(pkl)
        save_converted(gen, ckpt, [source_record(pkl, "nvidia_pickle")],
                       fit_samples=fit_samples, log=log)
        log(f"converted into {ckpt}")
    return load_generator(ckpt)
