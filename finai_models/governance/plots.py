"""Figures of the model card: each takes plain data and a path, writes one PNG and returns the path.

Figures are drawn with the Agg backend (no display on the pipeline workers) and every figure is
closed after saving, since a month's card draws several and the asset process lives on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from finai_models.governance.common import is_num  # noqa: E402

DPI = 110
SIZE = (7.0, 3.5)
COLOURS = {"teacher": "#4c72b0", "student": "#dd8452", "baseline": "#8c8c8c",
           "ok": "#55a868", "warning": "#e1a23b", "critical": "#c44e52"}


def _value(v: Any) -> float:
    return float(v) if is_num(v) else math.nan


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def performance_plot(tasks: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Teacher / student / baseline per task, one panel per metric: AUC, macro-F1 and MAE share no scale."""
    by_metric: dict[str, list[Mapping[str, Any]]] = {}
    for task in tasks:
        by_metric.setdefault(str(task.get("metric") or "metric"), []).append(task)
    fig, axes = plt.subplots(1, max(len(by_metric), 1), figsize=(SIZE[0] + 1.5, SIZE[1] + 0.8), squeeze=False,
                             gridspec_kw={"width_ratios": [len(v) for v in by_metric.values()] or [1]})
    width = 0.27
    for ax, (metric, rows) in zip(axes[0], by_metric.items(), strict=False):
        x = np.arange(len(rows))
        for k, role in enumerate(("teacher", "student", "baseline")):
            ax.bar(x + (k - 1) * width, [_value(r.get(role)) for r in rows], width, label=role, color=COLOURS[role])
        ax.set_xticks(x, [str(r.get("name")) for r in rows], rotation=55, ha="right", fontsize=7)
        ax.set_title(f"{metric} ({'lower' if metric in ('mae', 'rmse') else 'higher'} is better)", fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    axes[0][0].set_ylabel("metric value", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=7, ncol=3, loc="upper right", frameon=False)
    fig.suptitle("Per-task performance: teacher vs student vs baseline", fontsize=10, x=0.02, ha="left")
    return _save(fig, path)


def gate_heatmap(weights: Mapping[str, Mapping[str, Any]], path: Path) -> Path:
    """Task × expert mean gate weight, annotated, so which expert serves which task reads at a glance."""
    tasks = list(weights)
    experts = list(dict.fromkeys(e for row in weights.values() for e in (row or {})))
    grid = np.array([[_value((weights[t] or {}).get(e)) for e in experts] for t in tasks]).reshape(len(tasks), -1)
    fig, ax = plt.subplots(figsize=(SIZE[0], 1.2 + 0.3 * len(tasks)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(len(experts)), experts, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    top = np.nanmax(grid) if np.isfinite(grid).any() else 1.0
    for i in range(len(tasks)):
        for j in range(len(experts)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6.5,
                        color="white" if grid[i, j] < 0.6 * top else "black")
    fig.colorbar(image, ax=ax, label="mean layer-0 gate weight")
    ax.set_xlabel("expert")
    ax.set_title("Gate weights per task (month's customers)", fontsize=10)
    return _save(fig, path)


def fidelity_plot(gaps: Mapping[str, tuple[str, Any, bool]], path: Path) -> Path:
    """Tier-1 teacher-minus-student gap per task (task -> (gap name, value, passed)), coloured by verdict."""
    tasks = list(gaps)
    values = [_value(gaps[t][1]) for t in tasks]
    colours = [COLOURS["ok"] if gaps[t][2] else COLOURS["critical"] for t in tasks]
    fig, ax = plt.subplots(figsize=(SIZE[0], 1.0 + 0.28 * max(len(tasks), 1)))
    y = np.arange(len(tasks))
    ax.barh(y, np.nan_to_num(values), color=colours)
    for i, v in enumerate(values):
        label = f" {v:.4f}" if np.isfinite(v) else " n/a (no student)"
        ax.text(max(v, 0) if np.isfinite(v) else 0, i, label, va="center", fontsize=7, color="#333333")
    ax.set_yticks(y, [f"{t} ({gaps[t][0]})" for t in tasks], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    ax.margins(x=0.12)
    ax.set_xlabel("teacher - student gap (MAE/RMSE: relative excess); green = pass, red = fail")
    ax.set_title("Teacher-student fidelity (tier-1 gap)", fontsize=10)
    return _save(fig, path)


def psi_plot(values: Mapping[str, Any], warning: Any, critical: Any, title: str, path: Path) -> Path:
    """PSI bars (feature groups or task predictions) with the warning and critical thresholds drawn in."""
    names = list(values)
    psi = [_value(values[n]) for n in names]
    warn, crit = _value(warning), _value(critical)

    def colour(v: float) -> str:
        if np.isfinite(crit) and v >= crit:
            return COLOURS["critical"]
        return COLOURS["warning"] if np.isfinite(warn) and v >= warn else COLOURS["ok"]

    fig, ax = plt.subplots(figsize=(SIZE[0], 1.0 + 0.24 * max(len(names), 1)))
    y = np.arange(len(names))
    ax.barh(y, np.nan_to_num(psi), color=[colour(v) for v in psi])
    for level, name, style in ((warn, "warning", "--"), (crit, "critical", "-")):
        if np.isfinite(level):
            ax.axvline(level, color=COLOURS[name], linestyle=style, label=f"{name} {level:g}")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("population stability index (PSI)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def fairness_plot(rows: Sequence[Mapping[str, Any]], band: Sequence[Any], title: str, path: Path) -> Path:
    """Disparate impact per product and group with its interval; the acceptable band is shaded.

    Rows that were not judged (group below the minimum size) are drawn faded: their ratio is shown
    for transparency but carries no verdict. Products nobody was offered (both rates 0) are left out,
    and the axis stops at 3x the band, so one wide interval cannot flatten every other bar."""
    rows = [r for r in rows if _value(r.get("rate")) or _value(r.get("rate_reference"))] or list(rows)
    products = list(dict.fromkeys(str(r.get("product")) for r in rows))
    groups = list(dict.fromkeys(str(r.get("group")) for r in rows))
    width = 0.8 / max(len(groups), 1)
    cmap = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(SIZE[0] + 0.5, SIZE[1]))
    low, high = (_value(b) for b in band) if len(band) == 2 else (math.nan, math.nan)
    handles = []
    if np.isfinite(low) and np.isfinite(high):
        ax.axhspan(low, high, color=COLOURS["ok"], alpha=0.15)
        handles.append(Patch(color=COLOURS["ok"], alpha=0.15, label=f"accepted band {low:g}-{high:g}"))
    ax.axhline(1.0, color="black", linewidth=0.6)
    for g, group in enumerate(groups):
        for r in (r for r in rows if str(r.get("group")) == group):
            x = products.index(str(r.get("product"))) + (g - (len(groups) - 1) / 2) * width
            di, ci = _value(r.get("disparate_impact")), r.get("di_ci")
            err = None
            if isinstance(ci, Sequence) and len(ci) == 2 and np.isfinite(di):
                lo, hi = _value(ci[0]), _value(ci[1])
                if np.isfinite(lo) and np.isfinite(hi):
                    err = [[max(di - lo, 0.0)], [max(hi - di, 0.0)]]
            ax.bar(x, di, width, color=cmap(g % 10), alpha=0.9 if r.get("judged") else 0.3,
                   edgecolor=COLOURS["critical"] if r.get("violations") else "none", linewidth=1.5,
                   yerr=err, capsize=2, error_kw={"linewidth": 0.8})
        handles.append(Patch(color=cmap(g % 10), label=group))
    ax.set_xticks(range(len(products)), products, rotation=35, ha="right", fontsize=7)
    if np.isfinite(high):
        ax.set_ylim(0, 3 * high)
    ax.set_ylabel("disparate impact (group / reference)")
    ax.set_title(title, fontsize=10)
    handles.append(Patch(facecolor="white", edgecolor=COLOURS["critical"], linewidth=1.5, label="violation"))
    ax.legend(handles=handles, fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return _save(fig, path)
