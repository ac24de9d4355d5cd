"""The teacher-vs-baselines table and the ablation table, from the runs' saved test scores.

Every model is scored on the same test rows (``test_scores.npz`` of each run), with the intervals
and paired verdicts of ``teacher.quality``: each task's metric with a 95% customer bootstrap
interval and the teacher's advantage over each baseline, a win only where that interval is wholly
above zero. This is the small-data version of ``python -m benchmarks.quality`` (one seed, no
ceiling), shown by the ``teacher/comparison`` asset and printed by ``make run``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from finai_models.artifacts import current_version
from finai_models.config import Settings
from finai_models.errors import FinAIError
from finai_models.teacher.quality import compare_models, markdown
from finai_models.teacher.run import load_scores
from finai_models.teacher.tasks import from_config

MODELS = ("ple", "lightgbm", "shared_bottom", "mmoe")     # the comparison's rows: the architectures and the bar


def run_folder(root: Path) -> Path:
    """The finished run under ``root``: the one ``CURRENT`` names, else ``root`` itself."""
    version = current_version(root)
    return root / version if version else root


def _f(v: float | None) -> str:
    return "–" if v is None or not math.isfinite(v) else f"{v:.4f}"


def compare(settings: Settings, roots: Mapping[str, Path], reference: str = "lightgbm",
            resamples: int = 1000) -> dict[str, Any]:
    """The comparison of the runs under ``roots`` (model -> run root) on their test rows."""
    tasks = tuple(from_config(t) for t in settings.tasks)
    scores, first = {}, None
    for name, root in roots.items():
        z = load_scores(run_folder(Path(root)) / "test_scores.npz")
        if first is None:
            first = z
        elif not np.array_equal(z["customer_id"], first["customer_id"]):
            raise FinAIError(f"the {name} run scored other test rows than the first run; re-train it on this "
                             "training set")
        scores[name] = [{t.name: z[f"score__{t.name}"] for t in tasks}]
    if first is None:
        raise FinAIError("no runs to compare")
    y = {t.name: first[f"label__{t.name}"] for t in tasks}
    result = compare_models(tasks, y, first["customer_id"], scores, reference, resamples=resamples)
    models = [m for m in MODELS if m in scores] + [m for m in scores if m not in MODELS]
    return {"result": result, "verdicts": result["verdicts"], "markdown": markdown(result, models)}


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
