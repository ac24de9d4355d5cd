"""Arrays the teacher trains on: features, labels (NaN = missing) and row-aligned side tensors.

``load_split`` streams a training-set Parquet file into one preallocated float32 matrix (the
original's float64 Arrow path ran out of memory at 1M rows), so peak memory is about the matrix
itself. ``InputScaler`` is the teacher's last guard on its inputs: code columns pass through
Phase 0's normalizer unchanged (an ISO MCC code is ~5000), so columns whose training scale is far
from unit are standardised and everything is clipped; its statistics travel in the checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from finai_models.errors import DataError, FinAIError
from finai_models.phase0.side_inputs import load_side
from finai_models.teacher.experts.base import DIAGRAM_MASK, DIAGRAMS, SEQUENCE, SEQUENCE_MASK
from finai_models.teacher.tasks import TaskSpec

CLIP = 20.0


@dataclass
class TeacherData:
    x: np.ndarray                               # float32 [n, d]
    y: dict[str, np.ndarray]                    # task -> float32 [n], NaN where the label is missing
    side: dict[str, np.ndarray] = field(default_factory=dict)   # SEQUENCE, ... row-aligned
    customer_id: np.ndarray | None = None
    month: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    def batch(self, rows: np.ndarray, device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                                     dict[str, torch.Tensor]]:
        x = torch.from_numpy(np.ascontiguousarray(self.x[rows])).to(device, non_blocking=True)
        side = {k: torch.from_numpy(np.ascontiguousarray(v[rows])).to(device) for k, v in self.side.items()}
        y = {k: torch.from_numpy(np.ascontiguousarray(v[rows])).to(device) for k, v in self.y.items()}
        return x, side, y


def validate(data: TeacherData, tasks: tuple[TaskSpec, ...], what: str = "data") -> None:
    """Clear errors for labels of the wrong shape or type, missing tasks and non-finite features."""
    n = len(data.x)
    if data.x.ndim != 2:
        raise DataError(f"{what}: X must be 2-D [rows, features], got shape {data.x.shape}")
    for t in tasks:
        if t.name not in data.y:
            raise DataError(f"{what}: no labels for task {t.name!r} (labels given: {sorted(data.y)})")
        y = data.y[t.name]
        if y.shape != (n,):
            raise DataError(f"{what}: labels of task {t.name!r} have shape {y.shape}, expected ({n},) "
                            "(one value per row, NaN where missing)")
        seen = y[~np.isnan(y)]
        if t.kind == "binary" and not np.isin(seen, (0.0, 1.0)).all():
            raise DataError(f"{what}: binary task {t.name!r} has labels other than 0/1: {np.unique(seen)[:5]}")
        if t.kind == "multiclass" and ((seen < 0) | (seen >= t.classes) | (seen != np.round(seen))).any():
            raise DataError(f"{what}: multiclass task {t.name!r} needs class indices in [0, {t.classes})")
    extra = sorted(set(data.y) - {t.name for t in tasks})
    if extra:
        raise DataError(f"{what}: labels for unknown task(s) {extra}")
    if not np.isfinite(data.x).all():
        raise DataError(f"{what}: X has NaN or infinite values in column(s) "
                        f"{np.flatnonzero(~np.isfinite(data.x).all(axis=0))[:10].tolist()}")
    for key, value in data.side.items():
        if len(value) != n:
            raise DataError(f"{what}: side tensor {key!r} has {len(value)} rows, X has {n}")


@dataclass
class InputScaler:
    """``clip((x - shift) / scale)``: identity for unit-scale columns, z-score for the rest."""

    shift: np.ndarray
    scale: np.ndarray

    @staticmethod
    def fit(x: np.ndarray, sample: int = 200_000, seed: int = 0) -> InputScaler:
        rows = np.random.default_rng(seed).choice(len(x), size=min(len(x), sample), replace=False)
        s = x[np.sort(rows)].astype(np.float64)
        mean, std = s.mean(axis=0), s.std(axis=0)
        wild = (np.abs(mean) > 5) | (std > 5)
        return InputScaler(np.where(wild, mean, 0).astype(np.float32),
                           np.where(wild, np.maximum(std, 1e-6), 1).astype(np.float32))

    def transform_(self, x: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """In place, chunk by chunk (no second copy of a large matrix)."""
        for lo in range(0, len(x), chunk):
            block = x[lo:lo + chunk]
            np.clip((block - self.shift) / self.scale, -CLIP, CLIP, out=block)
        return x

    def to_dict(self) -> dict[str, Any]:
        return {"shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> InputScaler:
        return InputScaler(np.asarray(d["shift"], np.float32), np.asarray(d["scale"], np.float32))


def read_schema(folder: Path) -> dict[str, Any]:
    path = Path(folder) / "feature_schema.json"
    if not path.is_file():
        raise FinAIError(f"no training set at {folder} (missing feature_schema.json); materialize "
                         "training/training_set first")
    return json.loads(path.read_text())


def load_split(folder: Path, part: str, schema: dict[str, Any], tasks: tuple[TaskSpec, ...],
               max_rows: int | None = None) -> TeacherData:
    """One split of a training set (optionally its first ``max_rows`` rows) with its side tensors."""
    path = Path(folder) / f"{part}.parquet"
    if not path.is_file():
        raise FinAIError(f"training set split {part} is missing: {path}")
    file = pq.ParquetFile(path)
    n = file.metadata.num_rows if max_rows is None else min(max_rows, file.metadata.num_rows)
    columns = schema["columns"]
    label_cols = [f"label__{t.name}" for t in tasks]
    missing = [c for c in label_cols if c not in file.schema_arrow.names]
    if missing:
        raise FinAIError(f"{path} has no label column(s) {missing}; the tasks differ from the training set's")
    x = np.empty((n, len(columns)), np.float32)
    y = {t.name: np.empty(n, np.float32) for t in tasks}
    ids, months, at = np.empty(n, np.int64), np.empty(n, object), 0
    for batch in file.iter_batches(batch_size=32768, columns=["customer_id", "month", *columns, *label_cols]):
        take = min(batch.num_rows, n - at)
        if take <= 0:
            break
        for j, c in enumerate(columns):
            x[at:at + take, j] = batch.column(c).to_numpy(zero_copy_only=False)[:take]
        for t, c in zip(tasks, label_cols, strict=True):
            y[t.name][at:at + take] = batch.column(c).to_numpy(zero_copy_only=False)[:take]
        ids[at:at + take] = batch.column("customer_id").to_numpy()[:take]
        months[at:at + take] = batch.column("month").to_numpy(zero_copy_only=False)[:take]
        at += take
    side_arrays = load_side(Path(folder), part)
    side = {SEQUENCE: side_arrays.sequence, SEQUENCE_MASK: side_arrays.sequence_mask,
            DIAGRAMS: side_arrays.diagrams, DIAGRAM_MASK: side_arrays.diagram_mask}
    side = {k: np.asarray(v[:n]) for k, v in side.items()}
    return TeacherData(x, y, side, ids, months)


def nonzero_inputs(data: TeacherData, expert_columns: Mapping[str, np.ndarray],
                   sample: int = 20000) -> dict[str, float]:
    """Share of rows where each expert's routed input (and side tensor) is not all zero."""
    rows = np.arange(min(len(data), sample))
    out = {e: float((np.abs(data.x[np.ix_(rows, idx)]).sum(axis=1) > 0).mean()) for e, idx in expert_columns.items()}
    for key in (SEQUENCE, DIAGRAMS):
        if key in data.side:
            v = np.asarray(data.side[key][rows]).reshape(len(rows), -1)
            out[key] = float((np.abs(v).sum(axis=1) > 0).mean())
    return out
