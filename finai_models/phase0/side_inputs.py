"""Per-row side tensors for the teacher: the monthly sequence and the persistence diagrams.

The original trained its temporal expert on a length-1 "sequence" (the flat feature vector) and
its PersLay expert on 32 summary numbers. Here the training set carries, row-aligned with its
Parquet files, each customer's real 12-month series (the same ``MonthInputs.series`` Phase 0
reads, so it contains nothing after t) and the most persistent (birth, death) pairs of both TDA
groups. Series are sign-log1p compressed here and standardised with training statistics when
the training set is written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from finai_models.config import Settings
from finai_models.errors import FinAIError
from finai_models.phase0.features import load_inputs
from finai_models.phase0.inputs import SERIES
from finai_models.phase0.state import load_group

DIAGRAM_GROUPS = ("tda_global", "tda_local")


@dataclass
class SideInputs:
    sequence: np.ndarray       # float32 [n, L, F] sign-log1p series, zeros where absent
    sequence_mask: np.ndarray  # bool [n, L]
    diagrams: np.ndarray       # float32 [n, 2 * len(DIAGRAM_GROUPS), P, 2]
    diagram_mask: np.ndarray   # bool [n, H, P]: a real pair (death > birth)

    @staticmethod
    def concat(parts: list[SideInputs]) -> SideInputs:
        return SideInputs(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                            ("sequence", "sequence_mask", "diagrams", "diagram_mask")))


def month_side_inputs(settings: Settings, month: str, customer_id: np.ndarray) -> SideInputs:
    """Side tensors of ``month`` for the given customers (ascending ids present at that month)."""
    x = load_inputs(settings, month)
    rows = np.searchsorted(x.customer_id, customer_id)
    if (rows >= x.n).any() or not np.array_equal(x.customer_id[np.minimum(rows, x.n - 1)], customer_id):
        raise FinAIError(f"Phase-0 inputs of month {month} lack customers of its training rows; re-materialize them")
    x = x.subset(rows)
    series = x.series.astype(np.float32)
    sequence = np.where(x.present[..., None], np.sign(series) * np.log1p(np.abs(series)), 0).astype(np.float32)
    diagrams = np.concatenate([load_group(settings, g)[0].diagrams(x) for g in DIAGRAM_GROUPS], axis=1)
    return SideInputs(sequence, x.present.copy(), diagrams, diagrams[..., 1] > diagrams[..., 0])


def sequence_moments(sequence: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-series mean and std over present months (the training split's)."""
    values = sequence[mask].astype(np.float64)
    if not len(values):
        return np.zeros(len(SERIES), np.float32), np.ones(len(SERIES), np.float32)
    return values.mean(axis=0).astype(np.float32), np.maximum(values.std(axis=0), 1e-6).astype(np.float32)


def standardise(side: SideInputs, mean: np.ndarray, std: np.ndarray) -> SideInputs:
    sequence = np.where(side.sequence_mask[..., None], (side.sequence - mean) / std, 0).astype(np.float32)
    return SideInputs(sequence, side.sequence_mask, side.diagrams, side.diagram_mask)


def save_side(side: SideInputs, folder: Path, part: str) -> None:
    """One ``.npy`` per tensor (memory-mappable), written atomically."""
    for key in ("sequence", "sequence_mask", "diagrams", "diagram_mask"):
        path = folder / f"{part}.{key}.npy"
        tmp = folder / f"{part}.{key}.tmp.npy"
        np.save(tmp, getattr(side, key))
        os.replace(tmp, path)


def load_side(folder: Path, part: str, mmap: bool = True) -> SideInputs:
    mode = "r" if mmap else None
    try:
        return SideInputs(*(np.load(folder / f"{part}.{k}.npy", mmap_mode=mode) for k in
                            ("sequence", "sequence_mask", "diagrams", "diagram_mask")))
    except FileNotFoundError as exc:
        raise FinAIError(f"the training set at {folder} has no side tensors for {part} ({exc.filename}); "
                         "re-materialize training/training_set") from exc
