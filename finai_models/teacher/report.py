"""Tables and plots of a training run, for asset metadata and the closing comparison.

Plots are PNGs embedded in Markdown as data URIs, which the Dagster UI renders in place: people
read a gate heat map faster than 13 × 8 numbers.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

METRICS = {"binary": ("auc", "pr_auc"), "multiclass": ("macro_f1", "accuracy", "top3_accuracy", "ndcg@3"),
           "regression": ("mae", "rmse", "r2")}


def _fmt(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.4f}"


def metrics_table(per_task: Mapping[str, Mapping[str, float]]) -> str:
    keys = [k for ks in METRICS.values() for k in ks]
    lines = ["| task | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for task, m in per_task.items():
        lines.append(f"| {task} | " + " | ".join(_fmt(m.get(k)) for k in keys) + " |")
    return "\n".join(lines)


def gate_table(gates: Mapping[str, Any]) -> str:
    names = gates["experts"]
    lines = ["| task | " + " | ".join(names) + " | entropy |", "|---|" + "---|" * (len(names) + 1)]
    for task, weights in gates["mean_weight"].items():
        lines.append(f"| {task} | " + " | ".join(f"{weights[n]:.2f}" for n in names)
                     + f" | {gates['entropy'][task]:.3f} |")
    return "\n".join(lines)


def png_markdown(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f"![plot](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def gate_plot(gates: Mapping[str, Any]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, tasks = gates["experts"], list(gates["mean_weight"])
    grid = np.array([[gates["mean_weight"][t][n] for n in names] for t in tasks])
    fig, ax = plt.subplots(figsize=(1 + 0.8 * len(names), 0.9 + 0.32 * len(tasks)))
    image = ax.imshow(grid, cmap="viridis", aspect="auto", vmin=0)
    ax.set_xticks(range(len(names)), names, rotation=40, ha="right")
    ax.set_yticks(range(len(tasks)), [f"{t} (H={gates['entropy'][t]:.2f})" for t in tasks])
    for i in range(len(tasks)):
        for j in range(len(names)):
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if grid[i, j] < grid.max() * 0.6 else "black")
    fig.colorbar(image, ax=ax, label="mean layer-0 gate weight")
    ax.set_title("Per-task gate over the experts (test months)")
    out = png_markdown(fig)
    plt.close(fig)
    return out


def history_plot(history: Sequence[Mapping[str, Any]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3))
    a.plot(epochs, [h["train_loss"] for h in history], marker="o")
    a.set(xlabel="epoch", ylabel="training loss")
    for key in ("mean_binary_auc", "mean_macro_f1", "mean_r2", "primary_score"):
        b.plot(epochs, [h.get(key) for h in history], marker="o", label=key)
    b.set(xlabel="epoch", ylabel="validation")
    b.legend(fontsize=7)
    out = png_markdown(fig)
    plt.close(fig)
    return out


def materialization_metadata(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Pipes metadata (``{"raw_value", "type"}`` where the type is not inferred) of one run."""
    test, val = summary["test"], summary["validation"]
    md = {"raw_value": "", "type": "md"}
    meta: dict[str, Any] = {
        "run_dir": {"raw_value": summary["run_dir"], "type": "path"},
        "architecture": summary["architecture"], "parameters": summary["parameters"],
        "best_epoch": summary["best_epoch"], "epochs_trained": len(summary["history"]),
        "rows": {"raw_value": summary["rows"], "type": "json"},
        "test_mean_binary_auc": test["mean_binary_auc"], "test_mean_macro_f1": test["mean_macro_f1"],
        "test_mean_mae": test["mean_mae"], "test_product_ndcg@3": test.get("product_ndcg@3"),
        "validation_primary_score": val["primary_score"],
        "test_metrics": {**md, "raw_value": metrics_table(test["tasks"])},
        "training_curves": {**md, "raw_value": history_plot(summary["history"])},
        "epoch_history": {"raw_value": summary["history"], "type": "json"},
        "task_best_epoch": {"raw_value": summary.get("task_best") or {}, "type": "json"},
        "expert_input_nonzero": {"raw_value": summary["expert_input_nonzero"], "type": "json"},
    }
    if "gates" in summary:
        gates = summary["gates"]
        meta["gate_weights"] = {**md, "raw_value": gate_table(gates) + "\n\n" + gate_plot(gates)}
        meta["gate_entropy"] = {"raw_value": gates["entropy"], "type": "json"}
    return {k: v for k, v in meta.items() if v is not None and not (isinstance(v, float) and not math.isfinite(v))}
