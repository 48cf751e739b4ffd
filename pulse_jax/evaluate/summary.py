"""The figures of an evaluation, overall and per group, from its per-face records.

Every rate and mean comes with a bootstrap 95% interval (resampling the faces of the group,
:data:`BOOTSTRAP_SAMPLES` times, a fixed seed so a summary recomputes bit for bit). A rate is
over the faces where it is defined: ``success_rate`` over the searched faces,
``same_identity_rate`` and ``mean_identity_distance`` over the faces whose truth and output
both have a face the recogniser finds (``identity_measured`` counts them; the others are
``identity_missing``, reported, never counted as a match or a miss).

``chance_identity_distance`` and ``chance_same_identity_rate`` are the recogniser's own
level for a group: the mean distance between the truths of two *different* faces of the
group, and how often such a pair is under the threshold (at most :data:`CHANCE_FACES`
faces per group, a seeded sample, so the pairs stay few). A group whose PULSE distance is
low only because its chance level is low gets no credit for it: compare the two.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import numpy as np

from pulse_jax.evaluate.identity import SAME_IDENTITY

__all__ = ["BOOTSTRAP_SAMPLES", "CHANCE_FACES", "bootstrap_interval", "chance_figures", "gaps",
           "group_figures", "summarize"]

BOOTSTRAP_SAMPLES = 2000
CHANCE_FACES = 400
_LEVEL = 0.95


def bootstrap_interval(values: Sequence[float], seed: int = 0,
                       samples: int = BOOTSTRAP_SAMPLES) -> Optional[list[float]]:
    """The percentile bootstrap 95% interval ``[lo, hi]`` of the mean of ``values`` (None
    for no values; a single value is its own interval)."""
    x = np.asarray(values, np.float64)
    if x.size == 0:
        return None
    idx = np.random.default_rng(seed).integers(0, x.size, size=(samples, x.size))
    means = x[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - _LEVEL) / 2, (1 + _LEVEL) / 2])
    return [float(lo), float(hi)]


def _mean(values: list[float]) -> Optional[float]:
    return float(np.mean(values)) if values else None


def _identity_figures(items: Iterable[dict], seed: int) -> dict[str, Any]:
    """Same-identity rate and mean distance of records (or baseline entries) with a
    distance."""
    d = [r["identity_distance"] for r in items if r.get("identity_distance") is not None]
    same = [float(x < SAME_IDENTITY) for x in d]
    return {"identity_measured": len(d), "same_identity_rate": _mean(same),
            "same_identity_rate_ci": bootstrap_interval(same, seed),
            "mean_identity_distance": _mean(d),
            "mean_identity_distance_ci": bootstrap_interval(d, seed)}


def chance_figures(records: Sequence[dict], seed: int = 0) -> dict[str, Any]:
    """``chance_identity_distance`` and ``chance_same_identity_rate`` over the pairs of
    different truths of ``records`` (their ``truth_descriptor``; module doc); None with fewer
    than two."""
    d = np.asarray([r["truth_descriptor"] for r in records if r.get("truth_descriptor")],
                   np.float64)
    if len(d) > CHANCE_FACES:
        d = d[np.random.default_rng(seed).choice(len(d), CHANCE_FACES, replace=False)]
    if len(d) < 2:
        return {"chance_identity_distance": None, "chance_same_identity_rate": None}
    i, j = np.triu_indices(len(d), k=1)
    pair = np.linalg.norm(d[i] - d[j], axis=1)
    return {"chance_identity_distance": float(pair.mean()),
            "chance_same_identity_rate": float(np.mean(pair < SAME_IDENTITY))}


def group_figures(records: Sequence[dict], seed: int = 0) -> dict[str, Any]:
    """The figures of one group of face records (module doc): ``n``, ``success_rate`` and
    the identity figures, with intervals, and the same identity figures per baseline."""
    searched = [r for r in records if r.get("success") is not None]
    ok = [float(r["success"]) for r in searched]
    out = {"n": len(records), "searched": len(searched),
           "success_rate": _mean(ok), "success_rate_ci": bootstrap_interval(ok, seed),
           **_identity_figures(searched, seed)}
    out["identity_missing"] = len(searched) - out["identity_measured"]
    out.update(chance_figures(searched, seed))
    names = sorted({b for r in searched for b in (r.get("baselines") or {})})
    out["baselines"] = {b: _identity_figures([r["baselines"][b] for r in searched
                                              if b in (r.get("baselines") or {})], seed)
                        for b in names}
    return out


def gaps(groups: dict[str, dict[str, dict]]) -> dict[str, dict[str, Any]]:
    """For each label, the largest difference between two of its groups in success rate,
    same-identity rate and mean identity distance: ``{label: {figure: {"gap", "low",
    "high", "low_value", "high_value"}}}`` (groups without the figure left out; a label with
    fewer than two groups has none)."""
    out: dict[str, dict[str, Any]] = {}
    for label, by_value in groups.items():
        out[label] = {}
        for fig in ("success_rate", "same_identity_rate", "mean_identity_distance"):
            have = {v: g[fig] for v, g in by_value.items() if g.get(fig) is not None}
            if len(have) < 2:
                continue
            low, high = min(have, key=have.get), max(have, key=have.get)
            out[label][fig] = {"gap": have[high] - have[low], "low": low, "high": high,
                               "low_value": have[low], "high_value": have[high]}
    return out


def summarize(records: Sequence[dict], seed: int = 0) -> dict[str, Any]:
    """``{"overall": figures, "groups": {label: {value: figures}}, "gaps": ...}`` of an
    evaluation's records (each with ``group``, a dict of labels); records with an ``error``
    count in ``errors`` only."""
    good = [r for r in records if not r.get("error")]
    labels = sorted({k for r in good for k in (r.get("group") or {})})
    groups = {}
    for label in labels:
        values = sorted({r["group"][label] for r in good if label in (r.get("group") or {})})
        groups[label] = {v: group_figures([r for r in good
                                           if (r.get("group") or {}).get(label) == v], seed)
                         for v in values}
    return {"overall": group_figures(good, seed), "groups": groups, "gaps": gaps(groups),
            "errors": len(records) - len(good)}
