"""The contract every Phase-0 feature group follows.

A group is fitted once on training months (``fit``), then maps any snapshot month to a float32
matrix ``[customers, dim]`` in the row order of ``MonthInputs.customer_id`` (``transform``). Its
fitted state is a flat dict of numpy arrays (``state_dict``), saved as one ``.npz`` per group,
so the same state serves every later month and serving. Groups that do their relational work in
DuckDB get the warehouse connection; the others use only ``MonthInputs``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import duckdb
import numpy as np

from finai_models.config import Settings
from finai_models.phase0.inputs import MonthInputs


class FeatureGroupModel(ABC):
    name: ClassVar[str]

    def __init__(self, settings: Settings, dim: int):
        self.settings = settings
        self.dim = dim
        self.seed = int(settings.phase0.seed)

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        """Learn fitted state from training months only; stateless groups need nothing."""

    @abstractmethod
    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        """Features of month ``x.month``: float32 ``[x.n, self.dim]``, finite."""

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what ``state_dict`` returned."""

    def column_names(self) -> list[str]:
        return [f"{self.name}_{i:03d}" for i in range(self.dim)]

    # --- persistence -----------------------------------------------------------------------
    def save(self, folder: Path) -> Path:
        path = Path(folder) / f"{self.name}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **self.state_dict())
        tmp.replace(path)
        return path

    def load(self, folder: Path) -> None:
        with np.load(Path(folder) / f"{self.name}.npz", allow_pickle=False) as z:
            self.load_state_dict({k: z[k] for k in z.files})


def per_customer(values: np.ndarray, offsets: np.ndarray, reduce: np.ufunc, empty: float) -> np.ndarray:
    """Reduce flat per-transaction values to one value per customer (``empty`` where none)."""
    n = len(offsets) - 1
    out = np.full(n, empty, np.float64)
    has = np.diff(offsets) > 0
    if has.any() and len(values):
        starts = offsets[:-1][has]
        out[has] = reduce.reduceat(values.astype(np.float64), starts)
    return out
