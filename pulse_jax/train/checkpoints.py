"""Training checkpoints through orbax: exact resume, files of bounded size, rotation.

Layout: ``{workdir}/checkpoints/ckpt_{step:09d}/``, written by an orbax ``CheckpointManager``
with two items:

* ``state/``: every leaf of the :class:`~pulse_jax.train.state.TrainState` as a zarr3 array
  (float32/int32/uint32, exact), cut into chunks so that no file is larger than
  ``max_file_bytes`` (:data:`MAX_FILE_BYTES`, 16 MiB, by default): a run's state can be
  moved between machines in pieces of bounded size;
* ``meta/``: JSON with the step, the data stream's position, the :class:`TrainConfig`, the
  leaves' names, shapes and dtypes, and any extra fields (such as the run's full config).

Atomic: orbax builds the folder under a temporary name (``*.orbax-checkpoint-tmp-*``) and
renames it into place, and the next save removes what a crashed one left. A folder counts
as a checkpoint only once it holds orbax's commit record (``_CHECKPOINT_METADATA``), so an
empty or half-built folder with a checkpoint's name is ignored. Only the newest ``keep``
are kept (orbax's ``max_to_keep``); saving a step again replaces it.

Moving a run: copy ``ckpt_*`` into another workdir's ``checkpoints/`` (under another name
first, then rename it, so that a half-copied folder never looks complete); nothing in it
depends on where it was written. Resuming from a checkpoint with the same config, data and
device count continues bit-identically: ``N`` steps equal ``k`` steps, a restart, and
``N - k`` steps.

Why no OCDBT (orbax's default store): its ``ocdbt_target_data_file_size`` is a target that a
data file passes by whatever arrives while the previous file is being written, so it
cannot promise a bound. Without OCDBT every chunk of every array is a file of its own, at
most the chunk's bytes plus the codec's framing; chunks of half the cap leave that framing
ample room.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import pathlib
import shutil
from typing import Any, Iterator, Mapping, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from pulse_jax.train.state import TrainConfig, TrainState, init_state, state_shapes
from pulse_jax.train.step import batch_mesh, replicate

CHECKPOINT_FORMAT = "pulse-jax-train-state"
CHECKPOINT_VERSION = 2          # 1: the former state.npz + meta.json folders
MAX_FILE_BYTES = 16 * 2 ** 20   # the largest file a checkpoint may hold, by default
_COMMIT_RECORD = "_CHECKPOINT_METADATA"   # orbax writes it when the folder is complete


def _complete(path: os.PathLike) -> bool:
    return (pathlib.Path(path) / _COMMIT_RECORD).is_file()


@dataclasses.dataclass(frozen=True)
class _CompleteSteps(ocp.step.NameFormat):
    """Orbax's standard ``ckpt_000000042`` names, counting only folders with the commit record
    (orbax's own listing counts any folder of that name, even an empty one)."""

    base: Any = ocp.step.standard_name_format(step_prefix="ckpt", step_format_fixed_length=9)

    def build_name(self, step: int) -> str:
        return self.base.build_name(step)

    def find_all(self, base_path: Any) -> Iterator[ocp.step.Metadata]:
        return (m for m in self.base.find_all(base_path) if _complete(m.path))

    def find_step(self, base_path: Any, step: int) -> ocp.step.Metadata:
        found = self.base.find_step(base_path, step)
        if not _complete(found.path):
            raise ValueError(f"{found.path} is not a complete checkpoint")
        return found


_NAMES = _CompleteSteps()


def _state_handler() -> ocp.PyTreeCheckpointHandler:
    return ocp.PyTreeCheckpointHandler(use_ocdbt=False, use_zarr3=True)


def _manager(workdir: os.PathLike, keep: int) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max(1, keep), step_name_format=_NAMES, create=True,
        cleanup_tmp_directories=True,
        # Synchronous: the folder is complete when save_checkpoint returns, and the
        # donating train step may reuse the state's buffers right after.
        enable_async_checkpointing=False)
    return ocp.CheckpointManager(checkpoint_root(workdir).absolute(), options=options,
                                 item_handlers={"state": _state_handler(),
                                                "meta": ocp.JsonCheckpointHandler()})


def checkpoint_root(workdir: os.PathLike) -> pathlib.Path:
    """``{workdir}/checkpoints``: the folder that holds the ``ckpt_*`` folders."""
    return pathlib.Path(workdir) / "checkpoints"


def list_checkpoints(workdir: os.PathLike) -> list[tuple[int, pathlib.Path]]:
    """Complete checkpoints ``[(step, path)]`` in ``workdir``, oldest first."""
    root = checkpoint_root(workdir)
    if not root.is_dir():
        return []
    return sorted((m.step, pathlib.Path(m.path)) for m in _NAMES.find_all(root))


def latest_checkpoint(workdir: os.PathLike) -> Optional[pathlib.Path]:
    """The newest complete checkpoint folder in ``workdir``, or None."""
    found = list_checkpoints(workdir)
    return found[-1][1] if found else None


def _leaf_names(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def save_checkpoint(workdir: os.PathLike, state: TrainState, config: TrainConfig, *,
                    data_position: int = 0, keep: int = 3,
                    extra: Optional[Mapping[str, Any]] = None,
                    max_file_bytes: int = MAX_FILE_BYTES) -> pathlib.Path:
    """Writes ``state`` (+ data position, config, ``extra``) as ``ckpt_{step:09d}``.

    Atomic (a crash leaves the previous checkpoints intact and no complete-looking new one);
    only the newest ``keep`` (>= 1) are kept; no file in it exceeds ``max_file_bytes``.
    Returns the folder.
    """
    if max_file_bytes < 2 * 4096:
        raise ValueError(f"max_file_bytes must be >= 8192, got {max_file_bytes}")
    host = jax.device_get(state)
    step = int(host.step)
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(host)]
    meta = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "step": step,
        "data_position": int(data_position),
        "train_config": config.to_dict(),
        "leaves": [[n, list(a.shape), str(a.dtype)] for n, a in zip(_leaf_names(host), leaves)],
        **(dict(extra) if extra else {}),
    }
    try:  # before orbax starts writing: a failure inside its save leaves writers running
        json.dumps(meta)
    except (TypeError, ValueError) as e:
        raise ValueError(f"the checkpoint's metadata is not JSON: {e}") from None
    # Half the cap per chunk: a chunk's file adds the codec's framing to its bytes.
    chunks = ocp.SaveArgs(chunk_byte_size=max_file_bytes // 2)
    save_args = jax.tree_util.tree_map(lambda _: chunks, host)
    # A step saved again replaces the old folder (orbax never renames over one).
    shutil.rmtree(checkpoint_root(workdir) / _NAMES.build_name(step), ignore_errors=True)
    with _manager(workdir, keep) as manager:
        manager.save(step, force=True, args=ocp.args.Composite(
            state=ocp.args.PyTreeSave(host, save_args=save_args),
            meta=ocp.args.JsonSave(meta)))
    return checkpoint_root(workdir) / _NAMES.build_name(step)


def read_meta(path: os.PathLike) -> dict:
    """The JSON metadata of a checkpoint folder (step, data position, config, leaves, extra)."""
    path = pathlib.Path(path).absolute()
    if not _complete(path):
        raise ValueError(f"{path}: not a complete checkpoint")
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler(meta=ocp.JsonCheckpointHandler())) as c:
        meta = c.restore(path, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
    if meta.get("format_version", 0) > CHECKPOINT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta['format_version']} is newer than "
                         f"this pulse-jax reads ({CHECKPOINT_VERSION})")
    return meta


def load_checkpoint(path: os.PathLike, template: Any) -> tuple[TrainState, dict]:
    """Reads a checkpoint folder into the structure of ``template`` (a :class:`TrainState`
    of arrays or ``ShapeDtypeStruct``s, e.g. :func:`state_shapes`); returns
    ``(state of numpy arrays, meta)``. Names, shapes and dtypes must all match."""
    path = pathlib.Path(path).absolute()
    meta = read_meta(path)
    names, stored = _leaf_names(template), meta["leaves"]
    if [s[0] for s in stored] != names:
        diff = sorted(set(names) ^ {s[0] for s in stored})[:5]
        raise ValueError(f"{path}: the state's structure differs from the config's ({diff})")
    for t, (name, shape, dtype) in zip(jax.tree_util.tree_leaves(template), stored):
        if tuple(shape) != tuple(t.shape) or np.dtype(dtype) != t.dtype:
            raise ValueError(f"{path}: {name} is {dtype}{list(shape)}, the config needs "
                             f"{t.dtype}{list(t.shape)}")
    as_numpy = jax.tree_util.tree_map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray),
                                      template)
    with ocp.Checkpointer(ocp.CompositeCheckpointHandler(state=_state_handler())) as c:
        state = c.restore(path, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=template, restore_args=as_numpy))).state
    return state, meta


def restore_or_init(config: TrainConfig, workdir: os.PathLike,
                    mesh: Optional[jax.sharding.Mesh] = None
                    ) -> tuple[TrainState, int, Optional[pathlib.Path]]:
    """``(state, data_position, checkpoint path or None)``: the newest checkpoint in
    ``workdir`` if there is one, else a fresh state; replicated over ``mesh``.

    The checkpoint's generator and discriminator must equal ``config``'s; other settings
    (learning rates, ...) may change between runs (then the resumed run is no longer
    identical to an uninterrupted one).
    """
    mesh = batch_mesh() if mesh is None else mesh
    path = latest_checkpoint(workdir)
    if path is None:
        old = sorted(checkpoint_root(workdir).glob("ckpt_*/state.npz"))
        if old:  # starting afresh would later replace them, step by step
            raise ValueError(f"{old[-1].parent} is a format-1 checkpoint (state.npz), which "
                             "this pulse-jax no longer reads; resume it with the version "
                             "that wrote it, or train in another workdir")
        return replicate(init_state(config), mesh), 0, None
    saved = TrainConfig.from_dict(read_meta(path)["train_config"])
    if (saved.generator, saved.discriminator) != (config.generator, config.discriminator):
        raise ValueError(f"{path} was trained with another architecture:\n  "
                         f"{saved.generator} / {saved.discriminator}\nnot\n  "
                         f"{config.generator} / {config.discriminator}")
    state, meta = load_checkpoint(path, state_shapes(config))
    return replicate(state, mesh), int(meta["data_position"]), path
