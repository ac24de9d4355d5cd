"""The teacher-vs-baselines table and the ablation table, from the runs' ``metrics.json``.

Each task is compared on its own primary metric on the test months (AUC for binary, macro-F1 for
multiclass, MAE for regression - lower is better there), single seed, reported as measured.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finai_models.config import Settings
from finai_models.errors import FinAIError

PRIMARY = {"binary": ("auc", True), "multiclass": ("macro_f1", True), "regression": ("mae", False)}
MODELS = ("ple", "lightgbm", "shared_bottom", "mmoe")


def load_summaries(roots: Mapping[str, Path]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, root in roots.items():
        pointer = root / "CURRENT"
        path = (root / pointer.read_text().strip() if pointer.is_file() else root) / "metrics.json"
        if not path.is_file():
            raise FinAIError(f"no finished {name} run: {path} is missing; materialize teacher/{name} first")
        out[name] = json.loads(path.read_text())
    return out


def _f(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.4f}"


def compare(settings: Settings, summaries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    models = [m for m in MODELS if m in summaries]
    rows, wins = [], {m: 0 for m in models if m != "ple"}
    for task in settings.tasks:
        metric, higher = PRIMARY[task.type]
        values = {m: summaries[m]["test"]["tasks"][task.name].get(metric) for m in models}
        finite = {m: v for m, v in values.items() if v is not None and math.isfinite(v)}
        best = (max if higher else min)(finite, key=finite.get) if finite else None
        for m in wins:
            if "ple" in finite and m in finite and (finite["ple"] > finite[m] if higher else finite["ple"] < finite[m]):
                wins[m] += 1
        rows.append({"task": task.name, "type": task.type, "metric": metric, **values, "best": best})
    lines = ["| task | metric | " + " | ".join(models) + " | best |", "|---|---|" + "---|" * (len(models) + 1)]
    for r in rows:
        lines.append(f"| {r['task']} | {r['metric']} | " + " | ".join(_f(r[m]) for m in models) + f" | {r['best']} |")
    for key in ("mean_binary_auc", "mean_macro_f1", "mean_mae", "product_ndcg@3"):
        lines.append(f"| **{key}** | | " + " | ".join(_f(summaries[m]["test"].get(key)) for m in models) + " | |")
    lines.append("")
    lines.append("Teacher wins (of 13 tasks): " + ", ".join(f"vs {m} {w}" for m, w in wins.items()))
    return {"rows": rows, "wins": wins, "markdown": "\n".join(lines)}


def ablation_table(results: Mapping[str, Mapping[str, Any]]) -> str:
    keys = ("mean_binary_auc", "mean_macro_f1", "mean_mae", "product_ndcg@3", "primary_score")
    base = results.get("full", {}).get("test", {})
    lines = ["| variant | experts | gate | adaTT | " + " | ".join(keys) + " | Δ AUC vs full |",
             "|---|---|---|---|" + "---|" * (len(keys) + 1)]
    for name, r in results.items():
        t = r["test"]
        delta = t["mean_binary_auc"] - base["mean_binary_auc"] if base else float("nan")
        lines.append(f"| {name} | {len(r['experts'])} | {r['gate']} | {r['adatt']} | "
                     + " | ".join(_f(t.get(k)) for k in keys) + f" | {delta:+.4f} |")
    return "\n".join(lines) + "\n\nSingle seed; differences below ~0.005 AUC are within run-to-run noise."
