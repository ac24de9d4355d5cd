"""The Phase-0 features of a month as drift reads them: a seeded sample with column and group names."""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow.parquet as pq

from finai_models.config import Settings
from finai_models.phase0.features import feature_path
from finai_models.phase0.training_set import read_month


def feature_sample(con: duckdb.DuckDBPyConnection, settings: Settings, month: str, rows: int
                   ) -> tuple[np.ndarray, list[str], list[str]]:
    """``(x [rows, columns], column names, group of each column)``; the same seeded customers
    ``read_month`` gives the training set, so a month compared with itself has PSI 0."""
    sample = read_month(con, settings, month, rows)
    columns, groups = [], []
    for group in settings.feature_groups:
        names = pq.read_schema(feature_path(settings, group.name, month)).names[2:]
        columns += names
        groups += [group.name] * len(names)
    return sample.features.astype(np.float64), columns, groups
