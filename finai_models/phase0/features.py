"""Feature-group outputs on disk: one Parquet file per group and snapshot month.

``<artifacts>/phase0/features/<group>/<YYYY-MM>.parquet`` holds ``customer_id``, ``month`` and the
group's float32 columns, in customer order. Files are written under a temporary name and renamed,
so a failed run never leaves a partial month behind.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from finai_models import months as M
from finai_models.artifacts import ArtifactPaths, write_atomic
from finai_models.config import Settings
from finai_models.errors import FinAIError
from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import MonthInputs


def inputs_path(settings: Settings, month: str) -> Path:
    return ArtifactPaths.of(settings).month_inputs(month)


def feature_path(settings: Settings, group: str, month: str) -> Path:
    return ArtifactPaths.of(settings).feature_group(group, month)


def load_inputs(settings: Settings, month: str) -> MonthInputs:
    path = inputs_path(settings, month)
    if not path.is_file():
        raise FinAIError(f"Phase-0 inputs of month {month} are missing ({path}); materialize phase0/month_inputs "
                         f"for {month} first")
    return MonthInputs.load(path)


def compute_group(group: FeatureGroupModel, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> pa.Table:
    """Transform one month and check the output contract before anything is written."""
    values = group.transform(x, con)
    names = group.column_names()
    if values.shape != (x.n, group.dim) or len(names) != group.dim:
        raise FinAIError(f"feature group {group.name} produced {values.shape[1] if values.ndim == 2 else '?'} columns "
                         f"({len(names)} names) but feature_groups.yaml says dim {group.dim}")
    if not np.isfinite(values).all():
        raise FinAIError(f"feature group {group.name} produced non-finite values for month {x.month}")
    day = (M.first_day(x.month) - M.first_day("1970-01")).days
    arrays = [pa.array(x.customer_id), pa.array(np.full(x.n, day, np.int32), pa.date32())]
    arrays += [pa.array(values[:, j].astype(np.float32)) for j in range(group.dim)]
    return pa.Table.from_arrays(arrays, names=["customer_id", "month", *names])


def write_group(settings: Settings, group: str, month: str, table: pa.Table) -> Path:
    path = feature_path(settings, group, month)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp, compression="zstd", compression_level=1))
    return path
