"""The unpacked bundle as the handler uses it: verified, loaded once, and asked per customer.

``ServingModel.load`` checks every file of the bundle against the manifest's SHA-256 before it
reads any of them (a modified or truncated file stops the cold start with its name), then holds
the 13 students, the month's percentile grids, the customer batch and the gate student in memory.
Per customer it answers three questions: the model inputs (from the batch row or the request's
raw features), the 13 calibrated task outputs, and - for the products a customer is shown - the
student's TreeSHAP contributions summed per feature group and the teacher's gate weights.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from finai_serving.compiled import CompiledScorer
from finai_serving.features import FactReader, Facts, Normalization
from finai_serving.gates import predict_gates
from finai_serving.schema import FeatureSchema
from finai_serving.student import Student

MANIFEST = "model/manifest.json"
FORMAT = 2


class BundleIntegrityError(RuntimeError):
    """A bundle file is missing, unlisted or differs from its manifest digest."""


def verify_tree(root: Path) -> dict[str, Any]:
    """Check every file under ``root`` against ``model/manifest.json``; returns the manifest."""
    root = Path(root)
    path = root / MANIFEST
    if not path.is_file():
        raise BundleIntegrityError(f"{path} is missing: not a FinAI bundle")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise BundleIntegrityError(f"{path}: bundle format {manifest.get('format')!r}, this handler reads {FORMAT}")
    for name, digest in manifest["files"].items():
        file = root / name
        if not file.is_file():
            raise BundleIntegrityError(f"{name} is listed in the manifest but missing")
        if hashlib.sha256(file.read_bytes()).hexdigest() != digest:
            raise BundleIntegrityError(f"{name}: SHA-256 differs from the manifest (modified or corrupted)")
    return manifest


@dataclass
class Customer:
    """One customer's inputs: where they came from, the model row, facts, owned products, gate weights."""

    source: str                     # batch | request | cold_start
    x: np.ndarray | None            # [1, output columns]
    facts: Facts
    owned: set[str]
    gates: np.ndarray | None        # [tasks, experts]
    row: int | None = None          # the batch row (precomputed contributions)
    contributions: dict[str, np.ndarray] = field(default_factory=dict)   # live TreeSHAP, per task, this request


class ServingModel:
    def __init__(self, root: Path, manifest: dict[str, Any], scorer: str | None = None):
        model = root / "model"
        self.root, self.manifest = root, manifest
        self.cfg: dict[str, Any] = json.loads((model / "serving.json").read_text())
        self.schema = FeatureSchema.load(model / "schema.json")
        self.population: dict[str, Any] = json.loads((model / "population.json").read_text())
        self.tasks: list[dict[str, Any]] = self.cfg["tasks"]
        self.scorer = scorer or self.cfg["scorer"]
        self.students = {t["name"]: Student.load(model / "students" / t["name"], trees=self.scorer == "trees")
                         for t in self.tasks}
        self.compiled = self._compiled(model) if self.scorer == "compiled" else None
        self.norm = Normalization(self.schema.normalizer)
        self.raw_index = {c: j for j, c in enumerate(self.schema.raw_columns)}
        self.group_names = list(self.schema.group_names)
        self.groups = self.schema.group_index()         # of every column the students read
        self.facts = FactReader(self.schema.raw_columns, self.schema.lag_vocab,
                                {int(k): v for k, v in self.cfg["mcc_category"].items()})
        self.holds = {p: self.raw_index[f"holds_{p}"] for p in self.cfg["products"]}
        with np.load(model / "customers.npz") as batch:
            self.batch_ids = {str(c): i for i, c in enumerate(batch["customer_id"].tolist())}
            self.batch_raw, self.batch_gates, self.batch_contrib = batch["raw"], batch["gates"], batch["contrib"]
        with np.load(model / "gate_student.npz") as gs:
            self.gate_student = {k: gs[k] for k in gs.files}
        self.levels = np.linspace(0.0, 1.0, int(self.cfg["batch"]["quantiles"]))
        self.grids = {t: None if q is None else np.asarray(q, np.float64)
                      for t, q in self.population["quantiles"].items()}
        self.experts: list[str] = self.population["experts"]
        self.task_index = {t["name"]: i for i, t in enumerate(self.tasks)}
        self.contrib_index = {k: i for i, k in enumerate(self.population["contrib_keys"])}

    def _compiled(self, model: Path) -> CompiledScorer | None:
        if not any(s.booster is not None for s in self.students.values()):
            return None                                        # every task is served by rules
        if not (model / "trees.so").is_file():
            raise BundleIntegrityError("scorer 'compiled' but the bundle has no model/trees.so")
        doc = json.loads((model / "compiled.json").read_text())
        return CompiledScorer(model / "trees.so", doc["layout"], doc["width"])

    @classmethod
    def load(cls, root: Path | str, scorer: str | None = None) -> ServingModel:
        root = Path(root)
        return cls(root, verify_tree(root), scorer)

    @property
    def month(self) -> str:
        return self.manifest["month"]

    def customer(self, customer_id: str, raw_features: Mapping[str, float | None] | None) -> Customer:
        """The batch row, or the request's raw features (missing ones are NaN), or a cold start."""
        row = None
        if raw_features:
            raw = np.full(len(self.raw_index), np.nan, np.float32)
            for name, value in raw_features.items():
                raw[self.raw_index[name]] = np.nan if value is None else value
            source, gates = "request", None
        elif customer_id in self.batch_ids:
            row = self.batch_ids[customer_id]
            raw, source, gates = self.batch_raw[row], "batch", self.batch_gates[row]
        else:
            return Customer("cold_start", None, {}, set(), None)
        x = self.norm(raw[None, :])
        if gates is None:
            gates = predict_gates(x, self.gate_student)[0]
        owned = {p for p, j in self.holds.items() if raw[j] > 0.5}
        return Customer(source, x, self.facts(raw), owned, gates, row)

    def outputs(self, x: np.ndarray | None, off: set[str]) -> tuple[dict[str, Any], dict[str, str]]:
        """Every task's calibrated output and how it was served (model, rule, or kill switch)."""
        out, served = {}, {}
        raws = self.compiled.raw(x) if self.compiled is not None and x is not None else None
        for task in self.tasks:
            name = task["name"]
            student = self.students[name]
            if x is None or student.booster is None or name in off:
                out[name] = self.population["priors"][name]
                served[name] = "kill_switch" if name in off else "rule" if student.booster is None else "cold_start"
            else:
                value = (student.from_booster_raw(raws[name]) if raws is not None else student.predict(x))[0]
                out[name] = value.tolist() if task["type"] == "multiclass" else float(value)
                served[name] = "model"
        return out, served

    def percentiles(self, outputs: Mapping[str, Any], served: Mapping[str, str]) -> dict[str, float]:
        """Each task output's percentile among the month's customers; rule-served outputs are left out."""
        out = {}
        for task in self.tasks:
            name, grid = task["name"], self.grids.get(task["name"])
            if served[name] != "model" or grid is None:
                continue
            if task["type"] == "multiclass":
                for k, value in enumerate(outputs[name]):
                    out[f"{name}[{k}]"] = float(np.interp(value, grid[k], self.levels))
            else:
                out[name] = float(np.interp(outputs[name], grid[0], self.levels))
        return out

    def group_contributions(self, customer: Customer, task: str, cls: int | None = None) -> dict[str, float]:
        """The student's TreeSHAP contributions for this customer, summed per Phase-0 feature group:
        precomputed by the monthly batch for its customers, computed here (once per task) for others."""
        key = f"{task}[{cls}]" if cls is not None else task
        if customer.row is not None and key in self.contrib_index:
            sums = self.batch_contrib[customer.row, self.contrib_index[key]]
        else:
            student = self.students[task]
            if task not in customer.contributions:
                customer.contributions[task] = student.contributions(customer.x)[0]
            c = customer.contributions[task] if cls is None else customer.contributions[task][cls]
            cols = student.selected if student.selected is not None else np.arange(len(self.groups))
            sums = np.bincount(self.groups[cols], weights=c, minlength=len(self.group_names))
        return {g: float(v) for g, v in zip(self.group_names, sums, strict=True) if v != 0.0}

    def gate_weights(self, customer: Customer, task: str) -> dict[str, float]:
        if customer.gates is None:
            return {}
        row = customer.gates[self.task_index[task]]
        return {e: float(w) for e, w in zip(self.experts, row, strict=True)}
