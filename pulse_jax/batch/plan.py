"""Step 1 of a batch: what this process will do (:mod:`pulse_jax.batch`, "Plan").

A :class:`Plan` is fixed before any file is touched: the generator and search settings,
the options, the device mesh, every planned face and this process's share of them, and the
config hash that a face's record must carry to count as done.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import Any, Optional

import jax

from pulse_jax import degrade, images
from pulse_jax import search as search_lib
from pulse_jax.batch.faces import Face, plan_faces
from pulse_jax.batch.manifest import config_hash, degradation_fingerprint
from pulse_jax.batch.options import BatchOptions
from pulse_jax.devices import faces_mesh
from pulse_jax.generator import Generator

__all__ = ["Plan", "make_plan"]


@dataclasses.dataclass(frozen=True)
class Plan:
    """One process's share of a batch, decided before anything is read or written.

    Attributes:
      generator, cfg, options: what is searched, how (``cfg`` keeps restart images when
        contact sheets are asked for) and what is written.
      mesh: the local devices' ``"faces"`` mesh (None: the default device).
      output_dir: where everything is written.
      inputs: how many input files were found.
      all_faces: every planned face, of every process; ``mine``: this process's.
      process_index, process_count: this process and how many share the batch.
      config_hash: what a face's record must carry to be current (manifest.config_hash).
    """

    generator: Generator
    cfg: search_lib.SearchConfig
    options: BatchOptions
    mesh: Optional[jax.sharding.Mesh]
    output_dir: pathlib.Path
    inputs: int
    all_faces: list[Face]
    mine: list[Face]
    process_index: int
    process_count: int
    config_hash: str

    @property
    def per_face(self) -> bool:
        """Whether each face has its own operator (``mask()``: its mask file) rather than
        one operator for every face of an LR size."""
        return degrade.has_placeholder(self.options.operator)


def _input_paths(inputs: Any) -> list:
    if (isinstance(inputs, (list, tuple)) and inputs
            and all(isinstance(p, os.PathLike) for p in inputs)):
        return list(inputs)
    return images.discover_inputs(inputs)


def make_plan(generator: Generator, inputs: Any, output_dir: os.PathLike,
              search_config: search_lib.SearchConfig, options: Optional[BatchOptions],
              option_fields: Mapping[str, Any], process_index: Optional[int],
              process_count: Optional[int]) -> Plan:
    """The :class:`Plan` for :func:`pulse_jax.batch.run_batch`'s arguments (its doc).

    Raises:
      pulse_jax.images.ImageError: ``inputs`` names nothing.
      ValueError: invalid arguments.
    """
    opts = options or BatchOptions()
    if option_fields:
        opts = dataclasses.replace(opts, **option_fields)
    pi = jax.process_index() if process_index is None else int(process_index)
    pc = jax.process_count() if process_count is None else int(process_count)
    if not 0 <= pi < pc:
        raise ValueError(f"process_index {pi} is not in [0, {pc})")
    search_lib.check_generator(generator)
    mesh = faces_mesh(opts.devices)
    cfg = search_config
    if (opts.save_contact_sheet or opts.save_variability) and not cfg.keep_restart_images:
        cfg = dataclasses.replace(cfg, keep_restart_images=True)
    paths = _input_paths(inputs)
    if degrade.has_placeholder(opts.operator):
        paths = [p for p in paths if not pathlib.Path(p).stem.endswith("_mask")]  # masks
    all_faces = plan_faces(paths, opts.duplicates)
    # No degradation given: "" keeps the hash the reference's bicubic always had.
    op = opts.operator
    h = config_hash(generator, cfg, opts.seed, "" if op is None else degradation_fingerprint(op))
    return Plan(generator=generator, cfg=cfg, options=opts, mesh=mesh,
                output_dir=pathlib.Path(output_dir), inputs=len(paths), all_faces=all_faces,
                mine=[f for f in all_faces if f.face_id % pc == pi], process_index=pi,
                process_count=pc, config_hash=h)
