"""One task's student as it is shipped: a LightGBM model plus ``student.json``, scored one way.

Training (fidelity, promotion) and the Lambda handler both score through this class, so what the
fidelity gate measured is what customers get: the handler may evaluate the same trees with numpy
(``trees``) or compiled C (``compiled``), both tested to give the booster's raw scores exactly.
The booster always emits its raw score (a logit for binary, class logits for multiclass, a value
for regression, whatever objective trained it), ``student.json`` records that kind, and the
calibrator fitted on held-out rows is a 1-D map of that raw score (Platt for binary, a linear bias
correction for regression), applied here at prediction time. A student may have been trained on a
subset of the columns (``features``); callers still pass every column of ``columns`` and the
student selects its own.
A task routed to the rule engine has a ``student.json`` and no model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
RAW_OUTPUT = {"binary": "logit", "multiclass": "class_logits", "regression": "value"}


class StudentError(ValueError):
    """A student that cannot be loaded or an input it cannot score."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))   # overflow-free logistic


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def calibrate(kind: str, raw: np.ndarray, calibrator: dict[str, Any] | None) -> np.ndarray:
    """Raw booster score -> probability (binary), class probabilities (multiclass) or value."""
    if kind == "multiclass":
        return softmax(raw)
    a, b = (calibrator["a"], calibrator["b"]) if calibrator else (0.0, 1.0)
    z = a + b * raw
    return sigmoid(z) if kind == "binary" else z


@dataclass
class Student:
    meta: dict[str, Any]
    booster: Any | None          # lightgbm.Booster; None for a task routed to the rule engine
    ensemble: Any | None = None  # finai_serving.trees.TreeEnsemble: the same trees, scored with numpy

    def __post_init__(self) -> None:
        position = {c: i for i, c in enumerate(self.columns)}
        unknown = [c for c in self.meta.get("features", []) if c not in position]
        if unknown:
            raise StudentError(f"task {self.task!r}: student.json 'features' names columns outside 'columns': "
                               f"{unknown[:5]}")
        self.selected = (np.array([position[c] for c in self.meta["features"]], np.int64)
                         if "features" in self.meta else None)

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def route(self) -> str:
        return self.meta["route"]

    @property
    def columns(self) -> list[str]:
        return self.meta["columns"]

    @classmethod
    def load(cls, folder: Path | str, trees: bool = False) -> Student:
        """``trees``: also load ``trees.npz`` (the bundle's dumped trees) and score with it."""
        folder = Path(folder)
        meta_path = folder / "student.json"
        if not meta_path.is_file():
            raise StudentError(f"no student at {folder} (student.json missing)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != FORMAT:
            raise StudentError(f"{meta_path}: unknown student format {meta.get('format')!r}")
        if meta["route"] == "rule":
            return cls(meta, None)
        model = folder / "model.txt"
        if not model.is_file():
            raise StudentError(f"{folder}: student.json says route {meta['route']!r} but model.txt is missing")
        if sha256_file(model) != meta["model_sha256"]:
            raise StudentError(f"{model}: SHA-256 differs from student.json (a modified or mixed-up model)")
        import lightgbm as lgb

        booster = lgb.Booster(model_file=str(model))
        if not trees:
            return cls(meta, booster)
        from finai_serving.trees import TreeEnsemble

        return cls(meta, booster, TreeEnsemble.load(folder / "trees.npz"))

    def raw(self, x: np.ndarray) -> np.ndarray:
        if self.booster is None:
            raise StudentError(f"task {self.task!r} has no model: it is served by the rule engine")
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != len(self.columns):
            raise StudentError(f"task {self.task!r}: input must be [rows, {len(self.columns)}] in the order of "
                               f"student.json 'columns', got {list(x.shape)}")
        if self.selected is not None:
            x = x[:, self.selected]
        raw = self.ensemble.raw(x) if self.ensemble is not None else \
            np.asarray(self.booster.predict(x, num_iteration=self.meta["iterations"], raw_score=True))
        if self.meta["kind"] == "multiclass":
            raw = raw.reshape(len(x), -1)
        return raw + np.asarray(self.meta["raw_offset"])   # boosting started from this constant

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """LightGBM's per-feature contributions (TreeSHAP) over the student's own columns, without the
        bias term: ``[n, features]``, or ``[n, K, features]`` for multiclass (raw-score space)."""
        if self.booster is None:
            raise StudentError(f"task {self.task!r} has no model: it is served by the rule engine")
        x = np.asarray(x, dtype=np.float32)
        if self.selected is not None:
            x = x[:, self.selected]
        c = np.asarray(self.booster.predict(x, num_iteration=self.meta["iterations"], pred_contrib=True))
        if self.meta["kind"] == "multiclass":
            return c.reshape(len(x), -1, x.shape[1] + 1)[..., :-1]
        return c[:, :-1]

    def from_booster_raw(self, raw: np.ndarray) -> np.ndarray:
        """``predict``'s output from the booster's own raw score (what a compiled scorer returns)."""
        return calibrate(self.meta["kind"], raw + np.asarray(self.meta["raw_offset"]), self.meta.get("calibrator"))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (binary: [n]; multiclass: [n, K]) or values (regression: [n])."""
        return calibrate(self.meta["kind"], self.raw(x), self.meta.get("calibrator"))
