"""Step 6 of a batch: a face's images, then its manifest line (:mod:`pulse_jax.batch`,
"Write"). Every image is written atomically (:func:`pulse_jax.images.save_png`) and the
manifest line last, so a killed run leaves no face half recorded."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Sequence
from typing import Union

import numpy as np

from pulse_jax import degrade, images, pictures
from pulse_jax import search as search_lib
from pulse_jax.batch.faces import Face
from pulse_jax.batch.ledger import Ledger
from pulse_jax.batch.load import Loaded, mask_path

__all__ = ["save_frames", "write_face"]


def write_face(ledger: Ledger, loaded: Loaded, res: search_lib.Result, i: int, factor: int,
               wall: float, frame_w: int) -> None:
    """Writes face ``i`` of the chunk result ``res`` (the face ``loaded``, searched ``factor``
    times smaller than the generator's images, in a chunk that took ``wall`` seconds)."""
    plan = ledger.plan
    opts, cfg, out_dir = plan.options, plan.cfg, plan.output_dir
    f, lr, notes, op = loaded
    l2, ok, names = float(res.l2[i]), bool(res.success[i]), f.files()
    out = None
    if ok or opts.write_failures:
        images.save_png(out_dir / names["hr"], res.hr[i])
        out = str(out_dir / names["hr"])
    rec = {"output": out, "l2": l2 if math.isfinite(l2) else None, "success": ok,
           "eps": cfg.eps, "seed": int(opts.seed), "restart": int(res.restart[i]),
           "restart_l2": [float(x) if math.isfinite(x) else None
                          for x in np.asarray(res.restart_l2[i], np.float64)],
           "steps": cfg.steps, "restarts": cfg.restarts, "wall_s": round(wall, 4),
           "lr_size": int(lr.shape[0]), "factor": factor, "degradation": op.describe()}
    sigma2 = float(np.asarray(degrade.noise_variance(op)))
    if sigma2:
        rec["eps_effective"] = cfg.eps + sigma2
    if plan.per_face:
        rec["mask"] = str(mask_path(f.input))
    if opts.save_lr:
        images.save_png(out_dir / names["lr"], _rgb(res.lr[i]))
        rec["lr_output"] = str(out_dir / names["lr"])
    spread = None if res.variability is None else np.asarray(res.variability[i])
    if opts.save_variability:
        if spread is None:
            rec["variability"] = None
            rec["variability_note"] = ("one restart has no spread: run 2 or more "
                                       "(--config.search.restarts) for a variability map")
        else:
            rec["variability"] = round(float(spread.mean()), 6)
            rec["variability_restarts"] = int(res.variability_restarts[i])
            images.save_png(out_dir / names["variability"],
                            pictures.variability_pair(res.hr[i], spread))
            rec["variability_output"] = str(out_dir / names["variability"])
    if opts.save_contact_sheet:
        sheet = pictures.contact_sheet(_rgb(lr), res.hr[i], res.restart_hr[i],
                                       res.restart_l2[i], int(res.restart[i]), cfg.eps + sigma2,
                                       variability=spread)
        images.save_png(out_dir / names["sheet"], sheet)
        rec["sheet"] = str(out_dir / names["sheet"])
    if opts.save_intermediate:
        save_frames(out_dir, [f], res.hr[i:i + 1], op, cfg.steps, frame_w)
    if notes:
        rec["notes"] = notes
    ledger.record(f, rec)
    ledger.summary.done += 1
    if not ok:
        ledger.say(f"{f.input}: l2 {l2:.5g} > eps {cfg.eps + sigma2:g} (missed; best restart "
                   f"{int(res.restart[i])})")


def save_frames(output_dir: pathlib.Path, faces: Sequence[Face], hr: np.ndarray,
                degradation: Union[degrade.Operator, Sequence[degrade.Operator]], step: int,
                width: int) -> None:
    """Trajectory frames of ``faces``: ``{name}/HR/{name}_{step}.png`` from ``hr``
    ``[N, R, R, 3]`` and its degradation in ``LR/``, by one operator for every face or by
    each face's own (a sequence, one per face)."""
    hr = np.clip(np.asarray(hr)[: len(faces)], 0, 1)
    if isinstance(degradation, degrade.Operator):
        lr = np.asarray(degradation(hr))
    else:
        lr = np.concatenate([np.asarray(op(hr[i:i + 1])) for i, op in enumerate(degradation)])
    lr = _rgb(lr)
    for i, f in enumerate(faces):
        images.save_png(output_dir / f.name / "HR" / f"{f.name}_{step:0{width}d}.png", hr[i])
        images.save_png(output_dir / f.name / "LR" / f"{f.name}_{step:0{width}d}.png", lr[i])


def _rgb(x: np.ndarray) -> np.ndarray:
    """A one-channel (gray) image as 3 equal channels, for PNGs and sheets."""
    x = np.asarray(x)
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x
