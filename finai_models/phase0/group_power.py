"""How much each feature group alone knows: the evidence that no group is dead.

For every group and task, a small LightGBM is trained on the group's columns over training rows and
scored on held-out (validation) rows, once with the true labels and once with the training labels
shuffled. The lift (true score minus the better of the shuffled score and chance) says whether the
group carries signal; the table is reported in the asset check's metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

from finai_models.config import Task
from finai_models.metrics import auc, macro_ovr_auc, r2
from finai_serving.schema import Group

PARAMS = {"learning_rate": 0.15, "num_leaves": 15, "min_data_in_leaf": 10, "feature_fraction": 0.8,
          "bagging_fraction": 0.8, "bagging_freq": 1, "max_bin": 63, "num_threads": 1, "verbose": -1}
ROUNDS = 20
MAX_CLASSES = 10


def _target(task: Task, y_train: np.ndarray, y_valid: np.ndarray) -> tuple[str, np.ndarray, np.ndarray, int]:
    """The objective and targets for one task; wide multiclass tasks use their most common class vs rest."""
    if task.type == "regression":
        return "regression", y_train, y_valid, 1
    if task.type == "binary":
        return "binary", y_train, y_valid, 1
    classes = int(task.classes or y_train.max() + 1)
    if classes <= MAX_CLASSES:
        return "multiclass", y_train, y_valid, classes
    common = np.bincount(y_train.astype(int)).argmax()
    return "binary", (y_train == common).astype(float), (y_valid == common).astype(float), 1


CHANCE = {"regression": 0.0, "binary": 0.5, "multiclass": 0.5}


def _score(objective: str, y: np.ndarray, pred: np.ndarray) -> float:
    if objective == "regression":
        return r2(y, pred)
    if objective == "binary":
        return float(auc(y, pred))
    return macro_ovr_auc(y, pred)


def _fit_score(objective, classes, x_tr, y_tr, x_va, y_va, seed) -> float:
    params = {**PARAMS, "objective": objective, "seed": seed}
    if objective == "multiclass":
        params["num_class"] = classes
    booster = lgb.train(params, lgb.Dataset(x_tr, y_tr), num_boost_round=ROUNDS)
    return _score(objective, y_va, booster.predict(x_va))


def single_group_power(x_train: np.ndarray, labels_train: dict[str, np.ndarray], x_valid: np.ndarray,
                       labels_valid: dict[str, np.ndarray], groups: Sequence[Group], tasks: list[Task],
                       seed: int) -> list[dict[str, Any]]:
    """One row per group: per-task lift over shuffled labels and the best task."""
    rng = np.random.default_rng(seed)
    results = []
    for group in groups:
        cols = slice(group.start, group.end)
        x_tr, x_va = x_train[:, cols], x_valid[:, cols]
        lifts: dict[str, float] = {}
        scores: dict[str, float] = {}
        for task in tasks:
            y_tr, y_va = labels_train[task.name], labels_valid[task.name]
            m_tr, m_va = ~np.isnan(y_tr), ~np.isnan(y_va)
            if m_tr.sum() < 100 or m_va.sum() < 50:
                continue
            objective, t_tr, t_va, classes = _target(task, y_tr[m_tr], y_va[m_va])
            if objective != "regression" and (len(np.unique(t_tr)) < 2 or len(np.unique(t_va)) < 2):
                continue
            real = _fit_score(objective, classes, x_tr[m_tr], t_tr, x_va[m_va], t_va, seed)
            shuffled = _fit_score(objective, classes, x_tr[m_tr], rng.permutation(t_tr), x_va[m_va], t_va, seed)
            scores[task.name] = real
            baseline = max(shuffled, CHANCE[objective]) if np.isfinite(shuffled) else CHANCE[objective]
            lifts[task.name] = real - baseline if np.isfinite(real) else float("-inf")
        best = max(lifts, key=lifts.get) if lifts else None
        results.append({
            "group": group.name, "columns": group.end - group.start,
            "varying_columns": int((x_tr.std(axis=0) > 0).sum()),
            "best_task": best, "best_score": scores.get(best, float("nan")),
            "best_lift": lifts.get(best, float("nan")), "lifts": lifts,
        })
    return results
