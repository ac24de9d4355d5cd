"""The per-task LightGBM baseline on hard labels, on exactly the teacher's split and columns.

This is the bar the original teacher failed to clear in production (it lost to LightGBM on 10 of
11 tasks), so it is trained as seriously as the teacher: early stopping on the validation months,
the loss that matches the task (binary log-loss, softmax, Huber), a small search over leaves,
learning rate and leaf size (``baselines.lightgbm.search`` in ``configs/teacher.yaml``) judged on the
validation months only, and held-out test metrics from the same ``evaluate`` the teacher uses.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from finai_models.artifacts import write_text_atomic
from finai_models.config import Settings
from finai_models.teacher.data import load_split, read_schema
from finai_models.teacher.evaluate import evaluate, primary, task_metrics
from finai_models.teacher.run import save_scores, teacher_config
from finai_models.teacher.tasks import TaskSpec, from_config

OBJECTIVE = {"binary": "binary", "multiclass": "multiclass", "regression": "huber"}
# Early stopping watches what the task is judged on: log-loss on shifted validation months stops a
# rare-event task after 2 rounds because the base rate moved, while its ranking is still improving.
METRIC = {"binary": "auc", "multiclass": "multi_logloss", "regression": "l1"}


def _params(task: TaskSpec, base: dict[str, Any], seed: int) -> dict[str, Any]:
    params = {k: v for k, v in base.items() if k not in ("n_estimators", "early_stopping_rounds", "search",
                                                          "search_max_classes")}
    params.update(objective=OBJECTIVE[task.kind], metric=METRIC[task.kind], seed=seed, verbose=-1, max_bin=63)
    if task.kind == "multiclass":
        params["num_class"] = task.classes
    return params


class BinnedData:
    """Training and validation rows binned once, then subset per task (labels differ, bins do not).

    Finding the bins of ~1500 columns costs far more than 50 boosting rounds, so doing it once
    instead of once per task makes the 13 baselines several times faster.
    """

    def __init__(self, x: np.ndarray, x_val: np.ndarray, base: dict[str, Any]):
        # No pre-filtering by the leaf size: the search tries several min_child_samples on the same bins.
        params = {"max_bin": 63, "verbose": -1, "num_threads": base.get("num_threads", 2),
                  "feature_pre_filter": False}
        self.valid_x = x_val
        self.train = lgb.Dataset(x, np.zeros(len(x)), params=params, free_raw_data=False).construct()
        self.valid = lgb.Dataset(x_val, np.zeros(len(x_val)), reference=self.train, free_raw_data=False).construct()

    @staticmethod
    def rows(data: lgb.Dataset, y: np.ndarray) -> lgb.Dataset:
        seen = np.flatnonzero(~np.isnan(y))
        subset = data.subset(seen).construct()
        subset.set_label(y[seen])
        return subset


def fit_task(task: TaskSpec, data: BinnedData, y: np.ndarray, y_val: np.ndarray, base: dict[str, Any],
             seed: int = 42) -> lgb.Booster:
    stop = lgb.early_stopping(int(base.get("early_stopping_rounds", 30)), verbose=False)
    return lgb.train(_params(task, base, seed), BinnedData.rows(data.train, y),
                     num_boost_round=int(base.get("n_estimators", 400)),
                     valid_sets=[BinnedData.rows(data.valid, y_val)], callbacks=[stop])


def candidates(base: dict[str, Any], task: TaskSpec | None = None) -> list[dict[str, Any]]:
    """The base parameters, once per combination of the ``search`` grid (the base alone without one, or
    for a task with more than ``search_max_classes`` classes: 50-class trees cost 50x a binary task's)."""
    grid = base.get("search") or {}
    if task is not None and task.kind == "multiclass" and task.classes > int(base.get("search_max_classes", 1 << 30)):
        grid = {}
    plain = {k: v for k, v in base.items() if k not in ("search", "search_max_classes")}
    out = [plain]
    for key, values in grid.items():
        out = [{**c, key: v} for c in out for v in values]
    return out


def fit_searched(task: TaskSpec, data: BinnedData, y: np.ndarray, y_val: np.ndarray, base: dict[str, Any],
                 seed: int = 42) -> tuple[lgb.Booster, dict[str, Any], float]:
    """Every candidate early-stopped on the validation months; the one with the best validation
    primary metric (the test months are never looked at). Returns it, its parameters and score."""
    best: tuple[lgb.Booster, dict[str, Any], float] | None = None
    seen = ~np.isnan(y_val)
    for params in candidates(base, task):
        booster = fit_task(task, data, y, y_val, params, seed)
        value = primary(task, task_metrics(task, y_val[seen], score(task, booster, data.valid_x[seen])))
        if best is None or (np.isfinite(value) and not value <= best[2]):
            best = (booster, params, value)
    return best


def score(task: TaskSpec, booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    return booster.predict(x, num_iteration=booster.best_iteration)


def train_lightgbm_baseline(settings: Settings, training_set: Path, out_dir: Path,
                            log: Callable[[str], None] = print, max_train_rows: int | None = None) -> dict[str, Any]:
    """Per-task LightGBM on the training rows the teacher sees (``max_train_rows`` as ``train_teacher``)."""
    doc = teacher_config(settings)
    base = dict(doc["baselines"]["lightgbm"])
    schema = read_schema(training_set)
    tasks = tuple(from_config(t) for t in settings.tasks)
    cap = max_train_rows if max_train_rows is not None else doc.get("max_train_rows")
    parts = {p: load_split(training_set, p, schema, tasks, cap if p == "train" else None)
             for p in ("train", "validation", "test")}
    ranking = tuple(t.name for t in settings.tasks if t.group)
    scores: dict[str, dict[str, np.ndarray]] = {"validation": {}, "test": {}}
    rounds = {}
    binned = BinnedData(parts["train"].x, parts["validation"].x, base)
    chosen = {}
    for task in tasks:
        started = time.perf_counter()
        booster, params, _ = fit_searched(task, binned, parts["train"].y[task.name],
                                          parts["validation"].y[task.name], base)
        rounds[task.name] = booster.best_iteration
        chosen[task.name] = {k: params[k] for k in (base.get("search") or {}) if k in params}
        for p in scores:
            scores[p][task.name] = score(task, booster, parts[p].x)
        log(f"lightgbm {task.name}: {booster.best_iteration} rounds, {time.perf_counter() - started:.0f} s")
    summary = {"architecture": "lightgbm", "run_dir": str(out_dir), "training_set": schema.version,
               "rows": {p: len(d) for p, d in parts.items()}, "rounds": rounds, "chosen": chosen,
               "candidates": len(candidates(base)),
               **{p: evaluate(tasks, parts[p].y, scores[p], ranking) for p in scores}}
    out_dir.mkdir(parents=True, exist_ok=True)
    save_scores(out_dir / "test_scores.npz", parts["test"], scores["test"])
    write_text_atomic(out_dir / "metrics.json", json.dumps(summary, indent=1))
    return summary
