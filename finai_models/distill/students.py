"""One task's student: train (α-blended, or hard-only when routed DIRECT), calibrate, save, and judge.

Training rows are the sampled training months; early stopping watches the validation months
(AUC for binary tasks, the blended loss otherwise), and the calibrator (Platt on the raw logit
for binary, a linear bias correction for regression) is fitted on those validation rows too.
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
from finai_models.distill.inputs import load_inputs, load_part
from finai_models.distill.objective import BlendedObjective, Targets
from finai_models.errors import FinAIError
from finai_serving.student import FORMAT, RAW_OUTPUT, Student, sha256_file

Log = Callable[[str], None]


def fit_platt(raw: np.ndarray, y: np.ndarray, iterations: int = 50) -> dict[str, float]:
    """p = σ(a + b·raw) by Newton's method on the log-loss (a tiny ridge keeps it finite on separable rows)."""
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
    return {"kind": "platt", "a": float(a), "b": float(b)}


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
        meta.update(_fit(cfg, task, Path(inputs_dir), tmp, soft_override, decision["route"], log))
    (tmp / "student.json").write_text(json.dumps(meta, indent=1))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)
    return meta


def _fit(cfg: DistillConfig, task, inputs_dir: Path, tmp: Path, soft_override: np.ndarray | None, route: str,
         log: Log) -> dict[str, Any]:
    started = time.perf_counter()
    alpha = cfg.alpha if route == "distill" else 1.0
    objective = BlendedObjective(task.kind, alpha, cfg.temperature)
    _, hard, soft = load_part(inputs_dir, "train", task.name)
    if soft_override is not None:
        soft = soft_override
    x_val, hard_val, soft_val = load_part(inputs_dir, "validation", task.name)
    train_t, val_t = Targets(hard, soft), Targets(hard_val, soft_val)
    offset = objective.offset(train_t)
    k = task.classes if task.kind == "multiclass" else 1
    params = {k_: v for k_, v in cfg.lightgbm_for(task.name).items() if k_ not in ("n_estimators",
                                                                                  "early_stopping_rounds")}
    params.update(objective=lambda raw, _data: objective.gradients(_shape(raw, k), train_t),
                  metric="None", verbose=-1, seed=cfg.seed, feature_pre_filter=False)
    if task.kind == "multiclass":
        params["num_class"] = k
    n, n_val = len(hard), len(x_val)
    train = lgb.Dataset(str(inputs_dir / "train.bin"),
                        init_score=np.full(n, offset[0]) if k == 1 else np.tile(offset, (n, 1)))
    valid = lgb.Dataset(np.asarray(x_val), np.zeros(n_val), reference=train,
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
    raw_val = _shape(np.asarray(booster.predict(np.asarray(x_val), num_iteration=best, raw_score=True)), k) + offset
    seen = ~np.isnan(hard_val)
    calibrator = None
    if task.kind == "binary" and 0 < hard_val[seen].sum() < seen.sum():
        calibrator = fit_platt(raw_val[seen], hard_val[seen])
    elif task.kind == "regression" and seen.sum() > 2:
        calibrator = fit_bias_correction(raw_val[seen], hard_val[seen])
    seconds = time.perf_counter() - started
    log(f"{task.name}: {route}, alpha {alpha}, {best} of {rounds} rounds, {seconds:.0f} s")
    return {"alpha": alpha, "temperature": cfg.temperature, "iterations": int(best), "rounds_max": rounds,
            "raw_offset": offset.tolist(), "calibrator": calibrator, "model_sha256": sha256_file(tmp / "model.txt"),
            "train_rows": int(len(hard)), "seconds": round(seconds, 1),
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
