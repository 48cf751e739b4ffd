"""``report.md`` and its plots for an evaluation folder (matplotlib, no display needed).

Plots (``plots/``): ``groups_{label}.png``, per-group bars of the same-identity rate, the
mean identity distance and the success rate with their 95% intervals, PULSE beside the
baselines; ``identity_histogram.png``, the identity distances of PULSE and the baselines;
``best_worst.png``, the faces with the smallest and largest identity distance (observation
| PULSE | truth). The last one shows the evaluated faces themselves: keep it where their
licence allows.
"""

from __future__ import annotations

import pathlib
from typing import Any, Optional, Sequence

import numpy as np

from pulse_jax import files, images, pictures
from pulse_jax.evaluate.identity import SAME_IDENTITY
from pulse_jax.evaluate.measures import BASELINES

__all__ = ["REPORT", "gap_lines", "group_table", "write_report"]

REPORT = "report.md"
_METHODS = ("pulse",) + BASELINES
_COLOURS = {"pulse": "#c0392b", "bicubic": "#7f8c8d", "nearest": "#bdc3c7"}
_GRID_FACES = 4


def _pyplot():
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("the evaluation report needs matplotlib: install the evaluate extra: "
                          "pip install -e '.[evaluate]'") from e
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _of(figs: dict, method: str) -> dict:
    return figs if method == "pulse" else figs["baselines"].get(method, {})


def _fmt(value: Optional[float], ci: Optional[Sequence[float]] = None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    f = (lambda v: f"{100 * v:.0f}%") if pct else (lambda v: f"{v:.3f}")
    return f"{f(value)} [{f(ci[0])}, {f(ci[1])}]" if ci else f(value)


def _bars(ax, groups: dict, figure: str, methods: Sequence[str], title: str) -> None:
    values = list(groups)
    width = 0.8 / len(methods)
    for j, m in enumerate(methods):
        xs, ys, lo, hi = [], [], [], []
        for i, v in enumerate(values):
            f = _of(groups[v], m)
            if f.get(figure) is None:
                continue
            ci = f.get(f"{figure}_ci") or [f[figure]] * 2
            xs.append(i + (j - (len(methods) - 1) / 2) * width)
            ys.append(f[figure])
            lo.append(f[figure] - ci[0])
            hi.append(ci[1] - f[figure])
        if xs:  # a baseline where no face was ever found has no bar
            ax.bar(xs, ys, width, yerr=[lo, hi], capsize=3, label=m, color=_COLOURS[m])
    ax.set_xticks(range(len(values)))
    ax.set_xticklabels([f"{v}\n(n={groups[v]['n']})" for v in values], fontsize=8)
    ax.set_title(title, fontsize=10)


def _group_plot(plt, path: pathlib.Path, label: str, groups: dict) -> None:
    fig, axes = plt.subplots(1, 3, figsize=(1 + 3 * max(3.0, 0.9 * len(groups)), 3.6))
    _bars(axes[0], groups, "same_identity_rate", _METHODS,
          f"same identity (distance < {SAME_IDENTITY})")
    axes[0].set_ylim(0, 1)
    _bars(axes[1], groups, "mean_identity_distance", _METHODS, "mean identity distance")
    axes[1].axhline(SAME_IDENTITY, color="k", lw=0.8, ls="--")
    _bars(axes[2], groups, "success_rate", ("pulse",), "PULSE success (l2 <= eps)")
    axes[2].set_ylim(0, 1)
    if axes[1].get_legend_handles_labels()[0]:
        axes[1].legend(fontsize=8)
    fig.suptitle(f"by {label} (bars: 95% bootstrap intervals)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _histogram(plt, path: pathlib.Path, records: Sequence[dict]) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.6))
    bins = np.linspace(0, 1.2, 25)
    for m in _METHODS:
        d = [(r if m == "pulse" else r["baselines"][m]).get("identity_distance")
             for r in records]
        d = [x for x in d if x is not None]
        if d:
            ax.hist(d, bins=bins, histtype="step", lw=2, label=f"{m} (n={len(d)})",
                    color=_COLOURS[m])
    ax.axvline(SAME_IDENTITY, color="k", lw=0.8, ls="--")
    ax.set_xlabel("identity distance to the truth (dlib ResNet; < 0.6: same person)")
    ax.set_ylabel("faces")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _best_worst(path: pathlib.Path, out: pathlib.Path, records: Sequence[dict]) -> bool:
    have = sorted((r for r in records if r.get("identity_distance") is not None),
                  key=lambda r: r["identity_distance"])
    if not have:
        return False
    k = min(_GRID_FACES, len(have))
    rows = []
    for r in have[:k] + have[max(k, len(have) - k):]:
        hr = images.load_image(out / r["output"])[0]
        truth_path = out / r["truth_resized"] if r.get("truth_resized") else r["truth"]
        truth = images.load_image(truth_path)[0]
        lr = images.load_image(out / r["baselines"]["nearest"]["output"])[0]
        rows.append(np.concatenate([lr, hr, truth], axis=1))
    images.save_png(path, pictures.image_grid(np.stack(rows), cols=1, pad=2))
    return True


def _baseline_cell(b: dict, searched: int) -> str:
    rate = _fmt(b.get("same_identity_rate"), b.get("same_identity_rate_ci"), True)
    return f"{rate} ({b.get('identity_measured', 0)} of {searched} with a face)"


def group_table(groups: dict) -> list[str]:
    """Markdown table rows of per-group figures (``summary.json``'s ``groups[label]``, or
    ``{"all": overall}``)."""
    head = ("| group | n | success | same identity | mean identity distance | "
            "chance: distance, same identity | "
            + " | ".join(f"{b}: same identity" for b in BASELINES) + " | no face found |")
    lines = [head, "|" + " --- |" * (6 + len(BASELINES) + 1)]
    for v, f in groups.items():
        base = " | ".join(_baseline_cell(_of(f, b), f["searched"]) for b in BASELINES)
        lines.append(f"| {v} | {f['n']} | {_fmt(f['success_rate'], f['success_rate_ci'], True)}"
                     f" | {_fmt(f['same_identity_rate'], f['same_identity_rate_ci'], True)}"
                     f" | {_fmt(f['mean_identity_distance'], f['mean_identity_distance_ci'])}"
                     f" | {_fmt(f.get('chance_identity_distance'))}, "
                     f"{_fmt(f.get('chance_same_identity_rate'), pct=True)}"
                     f" | {base} | {f['identity_missing']} |")
    return lines


def gap_lines(gaps: dict) -> list[str]:
    """Markdown list lines stating each label's largest gap (``summary.json``'s ``gaps``)."""
    lines = []
    for label, figs in gaps.items():
        for fig, g in figs.items():
            pct = fig.endswith("rate")
            if g["gap"] == 0:
                lines.append(f"- **{label}, {fig.replace('_', ' ')}**: the same in every group "
                             f"({_fmt(g['low_value'], pct=pct)})")
                continue
            lines.append(f"- **{label}, {fig.replace('_', ' ')}**: {g['low']} "
                         f"{_fmt(g['low_value'], pct=pct)} against {g['high']} "
                         f"{_fmt(g['high_value'], pct=pct)} (a gap of {_fmt(g['gap'], pct=pct)})")
    return lines or ["- no label has two groups"]


def write_report(out: pathlib.Path, records: Sequence[dict], figures: dict[str, Any]) -> None:
    """Writes ``out/report.md`` and ``out/plots/*.png`` for an evaluation's records and its
    summary (:func:`pulse_jax.evaluate.summary.summarize` plus ``settings``)."""
    plt = _pyplot()
    plots = out / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    good = [r for r in records if not r.get("error")]
    s = figures["settings"]
    lines = ["# Evaluation report", "",
             f"Generator `{s['checkpoint']}` ({s['resolution']} px), observations "
             f"`{s['degradation']}`, {s['search'].get('restarts')} restarts of "
             f"{s['search'].get('steps')} steps, seed {s['seed']}; {len(good)} faces "
             f"measured, {figures['errors']} could not be read.", "",
             "Identity is dlib's face-recognition ResNet distance to the truth (under "
             f"{SAME_IDENTITY}: the same person for dlib). *Chance* is the recogniser's own "
             "level for the group: the mean distance between the truths of two different people in "
             "it, and how often such a pair counts as the same person; a group's distances "
             "mean something only against its chance level. Intervals are 95% bootstrap "
             "intervals over the faces of a group. Small groups have wide intervals: read "
             "them before the bars.", "", "## Overall", ""]
    lines += group_table({"all": figures["overall"]})
    _histogram(plt, plots / "identity_histogram.png", good)
    lines += ["", "![identity distances](plots/identity_histogram.png)", ""]
    for label, groups in figures["groups"].items():
        lines += [f"## By {label}", ""] + group_table(groups)
        _group_plot(plt, plots / f"groups_{label}.png", label, groups)
        lines += ["", f"![by {label}](plots/groups_{label}.png)", ""]
    lines += ["## Largest gaps between groups", ""] + gap_lines(figures["gaps"]) + [""]
    if _best_worst(plots / "best_worst.png", out, good):
        lines += ["## Best and worst faces by identity distance", "",
                  f"Rows: the {min(_GRID_FACES, len(good))} smallest distances, then the largest;"
                  " columns: observation (nearest) | PULSE | truth.", "",
                  "![best and worst](plots/best_worst.png)", ""]
    files.atomic_write_text(out / REPORT, "\n".join(lines))
