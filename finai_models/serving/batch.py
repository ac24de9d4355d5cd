"""The monthly serving batch: what the handler precomputes per customer and per population.

For a seeded sample of the month's customers (``batch.max_customers``) it stores the raw Phase-0
features and the teacher's layer-0 gate weights, so the handler can explain a known customer from
the teacher's own routing without torch. For everyone it fits the gate student (customers absent
from the batch) and records, per task output, the percentiles of the calibrated student scores
over the month's customers: the comparable scale products are ranked on. It also records each
product's share of holders (the rule fallback's popularity) and each task's label prior (the value
served for a task that has no model or is switched off).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from finai_models.config import Settings
from finai_models.distill.inputs import load_teacher
from finai_models.distill.students import screen_features
from finai_models.phase0.side_inputs import month_side_inputs, standardise
from finai_models.phase0.state import load_group
from finai_models.phase0.training_set import read_month
from finai_models.teacher.data import TeacherData
from finai_models.teacher.experts.base import DIAGRAM_MASK, DIAGRAMS, SEQUENCE, SEQUENCE_MASK
from finai_models.teacher.trainer import predict
from finai_serving.features import Normalization
from finai_serving.gates import predict_gates
from finai_serving.recommend import signal_key
from finai_serving.schema import FeatureSchema
from finai_serving.student import Student

Log = Callable[[str], None]


@dataclass
class BatchRows:
    """The month's customers as the batch reads them: raw Phase-0 features and the teacher's side tensors."""

    customer_id: np.ndarray          # int64 [n], ascending
    raw: np.ndarray                  # float32 [n, raw columns]
    side: dict[str, np.ndarray]      # SEQUENCE, SEQUENCE_MASK, DIAGRAMS, DIAGRAM_MASK (standardised)
    lag_vocab: list[int]             # MCC code of each txn_lag_tensor class (1..V)


def phase0_rows(con: duckdb.DuckDBPyConnection, settings: Settings, month: str, schema: FeatureSchema,
                max_customers: int) -> BatchRows:
    """A seeded sample of ``month``'s customers from the Phase-0 features, inputs and fitted state."""
    rows = read_month(con, settings, month, max_customers)
    side = standardise(month_side_inputs(settings, month, rows.customer_id),
                       np.asarray(schema.side.sequence_mean, np.float32),
                       np.asarray(schema.side.sequence_std, np.float32))
    lag_group, _ = load_group(settings, "txn_lag_tensor")
    return BatchRows(rows.customer_id, rows.features.astype(np.float32),
                     {SEQUENCE: side.sequence, SEQUENCE_MASK: side.sequence_mask, DIAGRAMS: side.diagrams,
                      DIAGRAM_MASK: side.diagram_mask}, [int(v) for v in lag_group.vocab])


def teacher_gates(teacher_path: Path, x: np.ndarray, side: dict[str, np.ndarray]
                  ) -> tuple[np.ndarray, list[str], list[str]]:
    """Layer-0 gate weights ``[n, tasks, experts]`` of the month's teacher, with task and expert names."""
    model, spec, encoder = load_teacher(teacher_path)
    _, gates = predict(model, TeacherData(encoder.transform_(x.copy()), {}, side))
    return gates, [t.name for t in spec.tasks], list(model.gate_names)


def fit_gate_student(x: np.ndarray, gates: np.ndarray, features: int, ridge: float, holdout: float, seed: int
                     ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Ridge from ``features`` screened columns to log gate weights; quality measured on held-out customers."""
    n, tasks, experts = gates.shape
    target = np.log(np.clip(gates, 1e-6, None)).reshape(n, tasks * experts).astype(np.float64)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[: int(n * holdout)], order[int(n * holdout):]
    cols = screen_features(x[train], target[train], features)
    xs = np.nan_to_num(np.asarray(x[train][:, cols], np.float64))
    mean, scale = xs.mean(axis=0), xs.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (xs - mean) / scale
    bias = target[train].mean(axis=0)
    weights = np.linalg.solve(z.T @ z + ridge * np.eye(len(cols)), z.T @ (target[train] - bias))
    student = {"columns": cols.astype(np.int64), "mean": mean, "scale": scale, "weights": weights, "bias": bias,
               "shape": np.array([tasks, experts], np.int64)}
    quality: dict[str, float] = {"holdout_customers": float(len(test))}
    if len(test):
        got, want = predict_gates(x[test], student), gates[test]
        prior = np.broadcast_to(want.mean(axis=0), want.shape)
        quality.update(mae=float(np.abs(got - want).mean()), prior_mae=float(np.abs(prior - want).mean()),
                       top_expert_agreement=float((got.argmax(-1) == want.argmax(-1)).mean()))
    return student, quality


def _quantiles(values: np.ndarray, n: int) -> list[list[float]]:
    values = values.reshape(len(values), -1)
    return np.quantile(values, np.linspace(0, 1, n), axis=0).T.round(8).tolist()


def group_contributions(students: dict[str, Student], catalogue: list[dict[str, Any]], x: np.ndarray,
                        schema: FeatureSchema) -> tuple[list[str], np.ndarray]:
    """Every customer's TreeSHAP contributions (LightGBM ``pred_contrib``) summed per feature group, for
    each modelled (task, class) a product signal reads: ``[n, signals, groups]``. The handler reads these
    for batch customers instead of running TreeSHAP per request (about 1 ms per task and customer)."""
    groups = schema.group_index()
    keys: list[str] = []
    blocks: list[np.ndarray] = []
    for signal in {signal_key(s): s for p in catalogue for s in p["signals"]}.values():
        student = students[signal["task"]]
        if student.booster is None:
            continue
        c = student.contributions(x)
        c = c[:, int(signal["class"])] if "class" in signal else c
        cols = student.selected if student.selected is not None else np.arange(len(groups))
        onehot = np.zeros((len(cols), len(schema.groups)), np.float64)
        onehot[np.arange(len(cols)), groups[cols]] = 1.0
        keys.append(signal_key(signal))
        blocks.append((c @ onehot).astype(np.float32))
    out = np.stack(blocks, axis=1) if blocks else np.zeros((len(x), 0, len(schema.groups)), np.float32)
    return keys, out


def label_priors(inputs_dir: Path, tasks: list[dict[str, Any]]) -> dict[str, Any]:
    """Each task's training-label prior: positive rate, class frequencies or mean."""
    priors: dict[str, Any] = {}
    with np.load(Path(inputs_dir) / "hard_train.npz") as hard:
        for task in tasks:
            y = hard[task["name"]].astype(np.float64)
            y = y[~np.isnan(y)]
            if task["type"] == "multiclass":
                priors[task["name"]] = (np.bincount(y.astype(np.int64), minlength=task["classes"])
                                        / max(len(y), 1)).round(6).tolist()
            else:
                priors[task["name"]] = round(float(y.mean()) if len(y) else 0.0, 6)
    return priors


def build_batch(rows: BatchRows, schema: FeatureSchema, cfg: dict[str, Any], teacher_path: Path,
                students_dir: Path, inputs_dir: Path, out: Path, seed: int = 0, log: Log = print) -> dict[str, Any]:
    """Write ``out/{customers.npz, gate_student.npz, population.json, schema.json}``; returns a summary.
    ``schema.json`` is the training set's feature schema with the lag tensor's MCC vocabulary added."""
    started = time.perf_counter()
    batch = cfg["batch"]
    x = Normalization(schema.normalizer)(rows.raw)
    gates, task_order, experts = teacher_gates(teacher_path, x, rows.side)
    names = [t["name"] for t in cfg["tasks"]]
    gates = gates[:, [task_order.index(t) for t in names]]
    log(f"{len(x):,} customers, teacher gate weights over {len(experts)} experts")
    gate_student, gate_quality = fit_gate_student(x, gates, int(batch["gate_student"]["features"]),
                                                  float(batch["gate_student"]["ridge"]),
                                                  float(batch["gate_student"]["holdout"]), seed=seed)
    quantiles: dict[str, list[list[float]] | None] = {}
    students = {name: Student.load(Path(students_dir) / name) for name in names}
    for name, student in students.items():
        quantiles[name] = None if student.booster is None else _quantiles(student.predict(x), int(batch["quantiles"]))
    contrib_keys, contrib = group_contributions(students, cfg["catalogue"], x, schema)
    raw_columns = list(schema.raw_columns)
    holds = {p: rows.raw[:, raw_columns.index(f"holds_{p}")] > 0.5 for p in cfg["products"]}
    popularity = {p["id"]: round(float(np.mean(np.any([holds[o] for o in p["owned_if"]], axis=0)))
                                 if p["owned_if"] else 0.0, 6) for p in cfg["catalogue"]}
    tmp = Path(str(out) + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.savez_compressed(tmp / "customers.npz", customer_id=rows.customer_id.astype(np.int64), raw=rows.raw,
                        gates=gates.astype(np.float32), contrib=contrib)
    np.savez(tmp / "gate_student.npz", **gate_student)
    population = {"customers": len(x), "tasks": names, "experts": experts, "quantiles": quantiles,
                  "contrib_keys": contrib_keys,
                  "popularity": popularity, "priors": label_priors(inputs_dir, cfg["tasks"]),
                  "gate_student": gate_quality}
    (tmp / "population.json").write_text(json.dumps(population))
    dataclasses.replace(schema, lag_vocab=tuple(rows.lag_vocab)).save(tmp / "schema.json")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    summary = {"customers": len(x), "seconds": round(time.perf_counter() - started, 1), "gate_student": gate_quality,
               "popularity": popularity}
    log(f"serving batch written to {out} in {summary['seconds']} s; gate student {gate_quality}")
    return summary
