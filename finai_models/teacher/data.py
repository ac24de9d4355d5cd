"""Arrays the teacher trains on: features, labels (NaN = missing) and row-aligned side tensors.

``load_split`` streams a training-set Parquet file into one preallocated float32 matrix (the
original's float64 Arrow path ran out of memory at 1M rows), so peak memory is about the matrix
itself. ``InputEncoder`` is how the teacher meets its inputs (quantile scores for numbers, integer
indices for codes); its fitted state travels in the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from finai_models.errors import DataError, FinAIError
from finai_models.phase0.schema import SCHEMA_FILE, label_column
from finai_models.phase0.side_inputs import load_side
from finai_models.teacher.experts.base import DIAGRAM_MASK, DIAGRAMS, SEQUENCE, SEQUENCE_MASK
from finai_models.teacher.tasks import TaskSpec
from finai_serving.schema import FeatureSchema, SchemaError

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


def validate(data: TeacherData, tasks: tuple[TaskSpec, ...], what: str = "data", allow_nan: bool = False) -> None:
    """Clear errors for labels of the wrong shape or type, missing tasks and non-finite features
    (NaN features are allowed where the caller encodes them, as ``PLETeacher`` does)."""
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
    bad = np.isinf(data.x) if allow_nan else ~np.isfinite(data.x)
    if bad.any():
        kind = "infinite" if allow_nan else "NaN or infinite"
        raise DataError(f"{what}: X has {kind} values in column(s) {np.flatnonzero(bad.any(axis=0))[:10].tolist()}")
    for key, value in data.side.items():
        if len(value) != n:
            raise DataError(f"{what}: side tensor {key!r} has {len(value)} rows, X has {n}")


QUANTILES = 128          # knots of the quantile transform
MIN_DISTINCT_KNOTS = 8  # fewer distinct knots (flags, small counts): a z-score keeps their spacing instead


@dataclass
class InputEncoder:
    """How the teacher meets its inputs, fitted on training rows only.

    A continuous column goes through its training quantiles to a standard-normal score (piecewise
    linear between ``QUANTILES`` knots; Gorishniy et al. and the tabular-DL benchmarks found this the
    strongest plain encoding for MLPs): heavy tails, mass points and Phase 0's mixed scales all land
    on one scale, and values beyond the training range clamp to the extreme knot. A column with few
    distinct values (a flag, a small count) is z-scored instead. A code column (``FeatureSchema.codes``)
    is not a number: it passes through as an integer index, clipped to the largest index
    seen in training (0 = unseen), for the model's embeddings. NaN becomes 0 (the median's score);
    ``PLETeacher`` adds a 0/1 "was missing" column for every training column that had NaN.
    """

    knots: list[np.ndarray]          # per column: increasing distinct knot values (empty: z-score or code)
    scores: list[np.ndarray]         # per column: normal score at each knot
    mean: np.ndarray
    std: np.ndarray
    code_max: np.ndarray             # per column: largest training code (-1: not a code column)

    @staticmethod
    def fit(x: np.ndarray, code_columns: np.ndarray | None = None, sample: int = 200_000,
            seed: int = 0, quantiles: bool = True) -> InputEncoder:
        """``quantiles=False`` z-scores every non-code column (the plain encoding, for comparison)."""
        from scipy.special import ndtri

        rows = np.random.default_rng(seed).choice(len(x), size=min(len(x), sample), replace=False)
        s = x[np.sort(rows)].astype(np.float64)
        d = s.shape[1]
        is_code = np.zeros(d, bool) if code_columns is None else np.isin(np.arange(d), code_columns)
        probs = (np.arange(QUANTILES) + 0.5) / QUANTILES
        knots, scores = [], []
        mean, std = np.nanmean(np.where(np.isfinite(s), s, np.nan), axis=0), np.nanstd(s, axis=0)
        code_max = np.full(d, -1, np.int64)
        for j in range(d):
            col = s[:, j][np.isfinite(s[:, j])]
            if is_code[j]:
                code_max[j] = int(col.max()) if len(col) else 0
                knots.append(np.empty(0, np.float32))
                scores.append(np.empty(0, np.float32))
                continue
            q = np.quantile(col, probs) if len(col) and quantiles else np.zeros(1)
            values, inverse = np.unique(q, return_inverse=True)
            if len(values) < MIN_DISTINCT_KNOTS:
                knots.append(np.empty(0, np.float32))
                scores.append(np.empty(0, np.float32))
                continue
            z = np.bincount(inverse, ndtri(probs)) / np.bincount(inverse)   # tied knots share their mean score
            knots.append(values.astype(np.float32))
            scores.append(z.astype(np.float32))
        mean, std = np.nan_to_num(mean), np.where(np.nan_to_num(std) > 1e-6, np.nan_to_num(std), 1.0)
        return InputEncoder(knots, scores, mean.astype(np.float32), std.astype(np.float32), code_max)

    @property
    def code_columns(self) -> np.ndarray:
        return np.flatnonzero(self.code_max >= 0)

    def transform_(self, x: np.ndarray, chunk: int = 65536) -> np.ndarray:
        """In place, chunk by chunk (no second copy of a large matrix)."""
        if x.shape[1] != len(self.knots):
            raise DataError(f"X has {x.shape[1]} columns; the input encoder was fitted on {len(self.knots)}")
        codes = self.code_columns
        for lo in range(0, len(x), chunk):
            block = x[lo:lo + chunk]
            missing = np.isnan(block)
            for j, (k, z) in enumerate(zip(self.knots, self.scores, strict=True)):
                if len(k):
                    block[:, j] = np.interp(block[:, j], k, z)
            plain = np.array([not len(k) for k in self.knots]) & (self.code_max < 0)
            block[:, plain] = np.clip((block[:, plain] - self.mean[plain]) / self.std[plain], -CLIP, CLIP)
            if len(codes):
                c = np.nan_to_num(block[:, codes], nan=0.0, posinf=0.0, neginf=0.0)
                block[:, codes] = np.where((c < 0) | (c > self.code_max[codes]), 0, np.round(c))
            block[missing] = 0.0
        return x

    def to_dict(self) -> dict[str, Any]:
        return {"knots": [k.tolist() for k in self.knots], "scores": [z.tolist() for z in self.scores],
                "mean": self.mean.tolist(), "std": self.std.tolist(), "code_max": self.code_max.tolist()}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> InputEncoder:
        return InputEncoder([np.asarray(k, np.float32) for k in d["knots"]],
                            [np.asarray(z, np.float32) for z in d["scores"]],
                            np.asarray(d["mean"], np.float32), np.asarray(d["std"], np.float32),
                            np.asarray(d["code_max"], np.int64))


def read_schema(folder: Path) -> FeatureSchema:
    """The training set's validated feature schema; a missing or inconsistent one is a ``DataError``."""
    path = Path(folder) / SCHEMA_FILE
    if not path.is_file():
        raise FinAIError(f"no training set at {folder} (missing {SCHEMA_FILE}); materialize "
                         "training/training_set first")
    try:
        return FeatureSchema.load(path)
    except SchemaError as exc:
        raise DataError(f"{exc}; rebuild training/training_set") from None


def load_split(folder: Path, part: str, schema: FeatureSchema, tasks: tuple[TaskSpec, ...],
               max_rows: int | None = None, seed: int = 0) -> TeacherData:
    """One split of a training set with its side tensors; with ``max_rows``, a seeded sample of that
    many rows from every month of the split (the first rows would be the earliest months only)."""
    path = Path(folder) / f"{part}.parquet"
    if not path.is_file():
        raise FinAIError(f"training set split {part} is missing: {path}")
    file = pq.ParquetFile(path)
    total = file.metadata.num_rows
    keep = np.arange(total) if max_rows is None or max_rows >= total else \
        np.sort(np.random.default_rng(seed).choice(total, size=max_rows, replace=False))
    n = len(keep)
    columns = list(schema.columns)
    label_cols = [label_column(t.name) for t in tasks]
    missing = [c for c in label_cols if c not in file.schema_arrow.names]
    if missing:
        raise FinAIError(f"{path} has no label column(s) {missing}; the tasks differ from the training set's")
    x = np.empty((n, len(columns)), np.float32)
    y = {t.name: np.empty(n, np.float32) for t in tasks}
    ids, months, at, start = np.empty(n, np.int64), np.empty(n, object), 0, 0
    for batch in file.iter_batches(batch_size=32768, columns=["customer_id", "month", *columns, *label_cols]):
        rows = keep[(keep >= start) & (keep < start + batch.num_rows)] - start
        start += batch.num_rows
        take = len(rows)
        if not take:
            continue
        for j, c in enumerate(columns):
            x[at:at + take, j] = batch.column(c).to_numpy(zero_copy_only=False)[rows]
        for t, c in zip(tasks, label_cols, strict=True):
            y[t.name][at:at + take] = batch.column(c).to_numpy(zero_copy_only=False)[rows]
        ids[at:at + take] = batch.column("customer_id").to_numpy()[rows]
        months[at:at + take] = batch.column("month").to_numpy(zero_copy_only=False)[rows]
        at += take
    side_arrays = load_side(Path(folder), part)
    side = {SEQUENCE: side_arrays.sequence, SEQUENCE_MASK: side_arrays.sequence_mask,
            DIAGRAMS: side_arrays.diagrams, DIAGRAM_MASK: side_arrays.diagram_mask}
    side = {k: np.asarray(v[keep]) for k, v in side.items()}
    return TeacherData(x, y, side, ids, months)


def nonzero_inputs(data: TeacherData, expert_columns: Mapping[str, np.ndarray],
                   sample: int = 20000) -> dict[str, float]:
    """Share of rows where each expert's routed input (and side tensor) is not all zero."""
    rows = np.arange(min(len(data), sample))
    out = {}
    for e, idx in expert_columns.items():
        raw = idx[idx < data.x.shape[1]]          # code embeddings (indices past x) are never all zero
        out[e] = float((np.abs(data.x[np.ix_(rows, raw)]).sum(axis=1) > 0).mean()) if len(raw) else 1.0
    for key in (SEQUENCE, DIAGRAMS):
        if key in data.side:
            v = np.asarray(data.side[key][rows]).reshape(len(rows), -1)
            out[key] = float((np.abs(v).sum(axis=1) > 0).mean())
    return out
