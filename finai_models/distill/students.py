"""One task's student: train (α-blended, or hard-only when routed DIRECT), calibrate, save, and judge.

Training rows are the month's sampled training rows (a task may take fewer, ``max_train_rows``),
and each student keeps the ``max_features`` columns that explain most of its target: the
teacher's logits when it distils, the hard labels when it is routed DIRECT (``screen_features``).
The shipped student still takes every column and selects its own. Early stopping watches the
validation months (AUC for binary tasks, the blended loss otherwise), and the calibrator (Platt
on the raw logit for binary, a linear bias correction for regression) is fitted there too.
The fidelity gate then scores the test months, which neither the student nor its calibrator
saw, through ``finai_serving.student`` - the same code the Lambda handler runs.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from finai_models import metrics as M
from finai_models.distill.config import DistillConfig
from finai_models.distill.fidelity import Fidelity, fidelity, teacher_scores
from finai_models.distill.inputs import load_inputs, load_part, sample_rows
from finai_models.distill.objective import BlendedObjective, Targets
from finai_models.errors import FinAIError
from finai_serving.student import FORMAT, RAW_OUTPUT, Student, sha256_file

Log = Callable[[str], None]


def fit_platt(raw: np.ndarray, y: np.ndarray, iterations: int = 50) -> dict[str, float]:
    """p = σ(a + b·raw) by Newton's method on the log-loss (a tiny ridge keeps it finite on separable rows).

    The slope is kept at b ≥ 0: calibration may rescale a student's order but never reverse it.
    When the best slope is negative (the student ranks the held-out rows worse than chance) the
    calibrator falls back to the base rate, and the fidelity gate judges that constant honestly."""
    a, b = 0.0, 1.0
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a + b * raw)))
        g = np.array([np.sum(p - y), np.sum((p - y) * raw)]) + 1e-6 * np.array([a, b - 1])
        w = p * (1 - p)
        h = np.array([[w.sum(), (w * raw).sum()], [(w * raw).sum(), (w * raw * raw).sum()]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    if b < 0:
        rate = float(np.clip(np.mean(y), 1e-6, 1 - 1e-6))
        a, b = np.log(rate / (1 - rate)), 0.0
    return {"kind": "platt", "a": float(a), "b": float(b)}


def screen_features(x: np.ndarray, target: np.ndarray, keep: int, max_rows: int = 50_000, seed: int = 0
                    ) -> np.ndarray:
    """Sorted indices of the ``keep`` columns of ``x`` with the largest Σ corr² over the target's columns.

    ``target`` is [n] or [n, K] (teacher logits, or one-hot classes); rows with a NaN target are
    ignored and at most ``max_rows`` rows are read. Linear screening is a cheap first cut: the
    trees still find the interactions among the columns it keeps."""
    target = np.asarray(target, np.float64).reshape(len(target), -1)
    if keep >= x.shape[1]:
        return np.arange(x.shape[1])
    rows = np.flatnonzero(~np.isnan(target).any(axis=1))
    if len(rows) > max_rows:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_rows, replace=False))
    xs = np.nan_to_num(np.asarray(x[rows], np.float64))
    ts = target[rows]
    for m in (xs, ts):                                                   # standardise in place
        m -= m.mean(axis=0)
        sd = m.std(axis=0)
        m /= np.where(sd > 0, sd, np.inf)                                # a constant column scores 0
    score = ((xs.T @ ts / len(rows)) ** 2).sum(axis=1)
    return np.sort(np.argsort(-score, kind="stable")[:keep])


def _screening_target(kind: str, classes: int, route: str, hard: np.ndarray, soft: np.ndarray) -> np.ndarray:
    """What the student learns: the teacher's logits (DISTILL) or the hard labels (DIRECT, one-hot classes)."""
    if route == "distill":
        return soft
    if kind != "multiclass":
        return hard
    onehot = np.full((len(hard), classes), np.nan)
    seen = ~np.isnan(hard)
    onehot[seen] = np.eye(classes)[hard[seen].astype(np.int64)]
    return onehot


def fit_bias_correction(raw: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """y ≈ a + b·raw by least squares."""
    b, a = np.polyfit(raw, y, 1)
    return {"kind": "linear", "a": float(a), "b": float(b)}


def train_student(cfg: DistillConfig, task_name: str, inputs_dir: Path, out_dir: Path,
                  log: Log = print, soft_override: np.ndarray | None = None) -> dict[str, Any]:
    """Train, calibrate and save one student under ``out_dir``; returns its ``student.json``.

    ``soft_override`` replaces the teacher's training-row logits (tests plant a broken student
    with it; nothing else should)."""
    task = cfg.task(task_name)
    meta_in = load_inputs(inputs_dir)
    decision = meta_in["routing"][task.name]
    meta: dict[str, Any] = {
        "format": FORMAT, "task": task.name, "kind": task.kind, "classes": task.classes, "route": decision["route"],
        "routing": decision, "columns": meta_in["columns"], "trained_months": meta_in["months"]["train"],
        "validation_months": meta_in["months"]["validation"], "training_set": meta_in["training_set"],
        "teacher": meta_in["teacher"], "raw_output": RAW_OUTPUT[task.kind]}
    tmp = Path(str(out_dir) + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    if decision["route"] != "rule":
        meta.update(_fit(cfg, task, Path(inputs_dir), tmp, soft_override, decision["route"], meta["columns"], log))
    (tmp / "student.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return meta


def _fit(cfg: DistillConfig, task, inputs_dir: Path, tmp: Path, soft_override: np.ndarray | None, route: str,
         columns: list[str], log: Log) -> dict[str, Any]:
    started = time.perf_counter()
    alpha = cfg.alpha if route == "distill" else 1.0
    objective = BlendedObjective(task.kind, alpha, cfg.temperature)
    x_all, hard, soft = load_part(inputs_dir, "train", task.name)
    if soft_override is not None:
        soft = soft_override
    max_rows, max_features = cfg.sample_for(task.name)
    rows = sample_rows(len(hard), max_rows, cfg.seed)
    if rows is not None:
        hard, soft = hard[rows], soft[rows]
    x = np.asarray(x_all if rows is None else x_all[rows])
    k = task.classes if task.kind == "multiclass" else 1
    features = screen_features(x, _screening_target(task.kind, k, route, hard, soft), max_features, seed=cfg.seed)
    x = x[:, features]
    x_val, hard_val, soft_val = load_part(inputs_dir, "validation", task.name)
    x_val = np.asarray(x_val[:, features])
    train_t, val_t = Targets(hard, soft), Targets(hard_val, soft_val)
    offset = objective.offset(train_t)
    params = {k_: v for k_, v in cfg.lightgbm_for(task.name).items() if k_ not in ("n_estimators",
                                                                                  "early_stopping_rounds")}
    params.update(objective=lambda raw, _data: objective.gradients(_shape(raw, k), train_t),
                  metric="None", verbose=-1, seed=cfg.seed, feature_pre_filter=False)
    if task.kind == "multiclass":
        params["num_class"] = k
    n, n_val = len(hard), len(x_val)
    train = lgb.Dataset(x, np.zeros(n), init_score=np.full(n, offset[0]) if k == 1 else np.tile(offset, (n, 1)))
    valid = lgb.Dataset(x_val, np.zeros(n_val), reference=train,
                        init_score=np.full(n_val, offset[0]) if k == 1 else np.tile(offset, (n_val, 1)))

    labelled = ~np.isnan(hard_val)

    def stop_metric(raw: np.ndarray, _data: lgb.Dataset) -> tuple[str, float, bool]:
        # Binary tasks stop on validation AUC: log-loss on later months stops a rare-event task after a
        # few rounds because the base rate moved (calibration fixes the level afterwards).
        if task.kind == "binary" and 0 < hard_val[labelled].sum() < labelled.sum():
            return "auc", float(M.auc(hard_val[labelled], raw[labelled])), True
        return "blended_loss", objective.loss(_shape(raw, k), val_t), False

    rounds = int(cfg.lightgbm_for(task.name).get("n_estimators", 300))
    patience = int(cfg.lightgbm_for(task.name).get("early_stopping_rounds", 20))
    booster = lgb.train(params, train, num_boost_round=rounds, valid_sets=[valid], valid_names=["validation"],
                        feval=stop_metric, callbacks=[lgb.early_stopping(patience, verbose=False)])
    best = booster.best_iteration or booster.current_iteration()
    booster.save_model(str(tmp / "model.txt"), num_iteration=best)
    raw_val = _shape(np.asarray(booster.predict(x_val, num_iteration=best, raw_score=True)), k) + offset
    seen = ~np.isnan(hard_val)
    calibrator = None
    if task.kind == "binary" and 0 < hard_val[seen].sum() < seen.sum():
        calibrator = fit_platt(raw_val[seen], hard_val[seen])
    elif task.kind == "regression" and seen.sum() > 2:
        calibrator = fit_bias_correction(raw_val[seen], hard_val[seen])
    seconds = time.perf_counter() - started
    log(f"{task.name}: {route}, alpha {alpha}, {n:,} rows x {len(features)} columns, {best} of {rounds} rounds, "
        f"{seconds:.0f} s")
    return {"alpha": alpha, "temperature": cfg.temperature, "iterations": int(best), "rounds_max": rounds,
            "raw_offset": offset.tolist(), "calibrator": calibrator, "model_sha256": sha256_file(tmp / "model.txt"),
            "features": [columns[i] for i in features], "train_rows": int(n), "seconds": round(seconds, 1),
            "lightgbm": {k_: v for k_, v in params.items() if k_ != "objective"}}


def _shape(raw: np.ndarray, k: int) -> np.ndarray:
    return raw.reshape(len(raw), k) if k > 1 and raw.ndim == 1 else raw


def evaluate_student(cfg: DistillConfig, task_name: str, student_dir: Path, inputs_dir: Path) -> Fidelity:
    """The fidelity gate for one student on the test months, scored by the serving code."""
    task = cfg.task(task_name)
    meta_in = load_inputs(inputs_dir)
    student = Student.load(student_dir)
    if student.task != task.name:
        raise FinAIError(f"{student_dir} holds the student of {student.task!r}, not {task.name!r}")
    seen_months = set(student.meta["trained_months"]) | set(student.meta["validation_months"])
    leaked = sorted(seen_months & set(meta_in["months"]["test"]))
    x, y, logits = load_part(inputs_dir, "test", task.name)
    if leaked:
        return Fidelity(task.name, student.route, False, {},
                        [f"test month(s) {leaked} were seen by the student in training or calibration"])
    if student.columns != meta_in["columns"]:
        return Fidelity(task.name, student.route, False, {},
                        ["the student's feature columns differ from the test rows' (a stale student)"])
    scores = None if student.route == "rule" else student.predict(np.asarray(x))
    return fidelity(task, student.route, y, teacher_scores(task, logits), scores, cfg.fidelity)
