"""Held-out metrics per task, the product-ranking NDCG, and the gate-weight summary.

Every task type keeps its own metrics (AUC and PR-AUC; macro-F1, top-k accuracy and NDCG@3;
MAE, RMSE and R²) and aggregates are never averaged across types. Checkpoints are selected on
``primary_score``, the mean of each task's primary metric (AUC, macro-F1, R²), because validation
loss is dominated by the regression and cross-entropy scales and keeps falling after AUC and
NDCG have peaked (B §6.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from finai_models import metrics as M
from finai_models.teacher.tasks import TaskSpec


def task_metrics(task: TaskSpec, y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    seen = ~np.isnan(y)
    y, score = y[seen], score[seen]
    out: dict[str, float] = {"rows": float(seen.sum())}
    if not len(y):
        return out
    if task.kind == "binary":
        both = 0 < y.sum() < len(y)
        out.update(auc=float(M.auc(y, score)) if both else float("nan"),
                   pr_auc=M.pr_auc(y, score), prevalence=float(y.mean()))
    elif task.kind == "multiclass":
        pred = score.argmax(axis=1)
        out.update(macro_f1=M.macro_f1(y, pred, task.classes), accuracy=float((pred == y).mean()))
        for k in task.top_k or (3,):
            if k > 1:
                out[f"top{k}_accuracy"] = M.top_k_accuracy(y, score, k)
        relevance = np.zeros_like(score)
        relevance[np.arange(len(y)), y.astype(np.int64)] = 1
        out["ndcg@3"] = M.ndcg_at_k(relevance, score, 3)
    else:
        err = score - y
        out.update(mae=float(np.abs(err).mean()), rmse=float(np.sqrt((err ** 2).mean())), r2=M.r2(y, score))
    return out


def primary(task: TaskSpec, m: Mapping[str, float]) -> float:
    key = {"binary": "auc", "multiclass": "macro_f1", "regression": "r2"}[task.kind]
    return float(m.get(key, float("nan")))


def evaluate(tasks: Sequence[TaskSpec], y: Mapping[str, np.ndarray], scores: Mapping[str, np.ndarray],
             ranking_tasks: Sequence[str] = ()) -> dict[str, object]:
    """Per-task metrics, type aggregates, NDCG@3 of the product ranking and ``primary_score``."""
    per_task = {t.name: task_metrics(t, y[t.name], scores[t.name]) for t in tasks}
    by_kind = {k: [per_task[t.name] for t in tasks if t.kind == k] for k in ("binary", "multiclass", "regression")}

    def mean(kind: str, key: str) -> float:
        values = [m[key] for m in by_kind[kind] if key in m and np.isfinite(m[key])]
        return float(np.mean(values)) if values else float("nan")

    out: dict[str, object] = {
        "tasks": per_task,
        "mean_binary_auc": mean("binary", "auc"), "mean_pr_auc": mean("binary", "pr_auc"),
        "mean_macro_f1": mean("multiclass", "macro_f1"), "mean_mae": mean("regression", "mae"),
        "mean_r2": mean("regression", "r2"),
    }
    if ranking_tasks:
        rel = np.stack([y[t] for t in ranking_tasks], axis=1)
        known = ~np.isnan(rel).any(axis=1)
        out["product_ndcg@3"] = M.ndcg_at_k(rel[known], np.stack([scores[t] for t in ranking_tasks], 1)[known], 3)
    prim = [primary(t, per_task[t.name]) for t in tasks]
    out["primary_score"] = float(np.nanmean(prim)) if np.isfinite(prim).any() else float("nan")
    return out


def gate_summary(gates: np.ndarray, tasks: Sequence[TaskSpec], names: Sequence[str]) -> dict[str, object]:
    """Mean weight per (task, expert) and entropy per task, normalised by log(experts) (1 = uniform)."""
    mean = gates.mean(axis=0)                                                      # [T, E]
    row_entropy = -(gates * np.log(np.clip(gates, 1e-12, None))).sum(axis=-1).mean(axis=0) / np.log(len(names))
    return {
        "experts": list(names),
        "mean_weight": {t.name: dict(zip(names, map(float, mean[i]), strict=True)) for i, t in enumerate(tasks)},
        "entropy": {t.name: float(row_entropy[i]) for i, t in enumerate(tasks)},
        "top_expert": {t.name: names[int(mean[i].argmax())] for i, t in enumerate(tasks)},
    }
