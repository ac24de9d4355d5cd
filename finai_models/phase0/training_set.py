"""The training set: temporal split, normalization fitted on train, and the feature schema.

Rows are (customer, snapshot month) pairs of the split's months, at most ``max_rows_per_month``
each (seeded sample, the same customers in both passes). Pass 1 accumulates training statistics
month by month; pass 2 writes ``train/validation/test.parquet`` with normalized features (plus
``_log`` copies) and the 13 labels, with row-aligned side tensors (monthly sequence, persistence
diagrams; ``side_inputs``) as ``<part>.<tensor>.npy``. ``feature_schema.json`` (a
``finai_serving.schema.FeatureSchema``) records column order, group ranges, expert routing and the
normalizer, so training and serving read columns the same way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from finai_models import months as M
from finai_models.artifacts import ArtifactPaths, set_current
from finai_models.config import Settings
from finai_models.data.store import fingerprint
from finai_models.errors import FinAIError
from finai_models.phase0.features import feature_path
from finai_models.phase0.inputs import SERIES
from finai_models.phase0.normalize import MomentAccumulator, Normalizer
from finai_models.phase0.schema import SCHEMA_FILE, label_column, schema_for
from finai_models.phase0.side_inputs import SideInputs, month_side_inputs, save_side, sequence_moments, standardise
from finai_serving.schema import FeatureSchema, Side

SPLITS = ("train", "validation", "test")


@dataclass
class MonthRows:
    customer_id: np.ndarray
    features: np.ndarray          # float32 [n, d] raw (not normalized)
    labels: dict[str, np.ndarray]  # task -> float64 [n], nan where unobservable


def split_months(settings: Settings) -> dict[str, list[str]]:
    return {part: M.month_range(*settings.split[part]) for part in SPLITS}


def feature_columns(settings: Settings, month: str) -> dict[str, list[str]]:
    """Each group's column names, in config group order, as the month's feature files have them."""
    return {group.name: pq.read_schema(feature_path(settings, group.name, month)).names[2:]
            for group in settings.feature_groups}


def read_month(con: duckdb.DuckDBPyConnection, settings: Settings, month: str, max_rows: int,
               label_table: str = "phase0.labels") -> MonthRows:
    """Features of every group and the labels for a seeded sample of the month's customers."""
    blocks, ids = [], None
    for group in settings.feature_groups:
        path = feature_path(settings, group.name, month)
        if not path.is_file():
            raise FinAIError(f"feature group {group.name} has no month {month} ({path}); materialize it first")
        table = pq.read_table(path)
        group_ids = table["customer_id"].to_numpy()
        if ids is None:
            ids = group_ids
        elif not np.array_equal(ids, group_ids):
            raise FinAIError(f"feature group {group.name} month {month} has other customers than "
                             f"{settings.feature_groups[0].name}")
        blocks.append(np.stack([c.to_numpy() for c in table.columns[2:]], axis=1))
    rng = np.random.default_rng([int(settings.phase0.seed), M.diff(month, "2000-01")])
    rows = np.sort(rng.choice(len(ids), size=min(len(ids), max_rows), replace=False))
    label_rows = con.execute(f"SELECT * FROM {label_table} WHERE month = ? ORDER BY customer_id",
                             [M.first_day(month)]).fetchnumpy()
    if not np.array_equal(np.asarray(label_rows["customer_id"]), ids):
        raise FinAIError(f"labels of month {month} cover other customers than its features; re-materialize both")
    labels = {t.name: np.ma.filled(np.ma.asarray(label_rows[t.name]).astype(np.float64), np.nan)[rows]
              for t in settings.tasks}
    return MonthRows(ids[rows], np.concatenate(blocks, axis=1)[rows], labels)


def build_training_set(con: duckdb.DuckDBPyConnection, settings: Settings, state_version: str,
                       log=print) -> tuple[Path, FeatureSchema]:
    max_rows = int(settings.pipeline.training_set.max_rows_per_month)
    months = split_months(settings)
    group_columns = feature_columns(settings, months["train"][0])
    columns = [c for names in group_columns.values() for c in names]
    ranges, at = [], 0
    for name, names in group_columns.items():     # ranges in the identity: versions predate the typed schema
        ranges.append({"name": name, "start": at, "end": at + len(names)})
        at += len(names)
    identity = {"state": state_version, "split": settings.split, "groups": ranges, "max_rows": max_rows, "side": 1}
    version = fingerprint(identity)
    out = ArtifactPaths.of(settings).training_sets() / version
    out.mkdir(parents=True, exist_ok=True)

    acc = MomentAccumulator(columns)
    for month in months["train"]:
        acc.update(read_month(con, settings, month, max_rows).features)
    normalizer = Normalizer.fit(acc)
    out_columns = normalizer.output_columns
    rows = {}
    moments = None
    for part in SPLITS:
        sides: list[SideInputs] = []
        fields = [pa.field("customer_id", pa.int64()), pa.field("month", pa.string())]
        fields += [pa.field(c, pa.float32()) for c in out_columns]
        fields += [pa.field(label_column(t.name), pa.float64()) for t in settings.tasks]
        table_schema = pa.schema(fields)
        tmp = out / f"{part}.parquet.tmp"
        rows[part] = 0
        with pq.ParquetWriter(tmp, table_schema, compression="zstd", compression_level=1) as writer:
            for month in months[part]:
                data = read_month(con, settings, month, max_rows)
                x = normalizer.transform(data.features)
                arrays = [pa.array(data.customer_id), pa.array([month] * len(data.customer_id))]
                arrays += [pa.array(x[:, j]) for j in range(x.shape[1])]
                arrays += [pa.array(data.labels[t.name]) for t in settings.tasks]
                writer.write_table(pa.Table.from_arrays(arrays, schema=table_schema))
                rows[part] += len(data.customer_id)
                sides.append(month_side_inputs(settings, month, data.customer_id))
        side = SideInputs.concat(sides)
        moments = moments or sequence_moments(side.sequence, side.sequence_mask)   # train comes first
        save_side(standardise(side, *moments), out, part)
        os.replace(tmp, out / f"{part}.parquet")
        log(f"training set {part}: {rows[part]:,} rows from {len(months[part])} months")
    schema = schema_for(
        settings, group_columns, version, normalizer=normalizer.to_json(), state_version=state_version,
        split={p: settings.split[p] for p in SPLITS}, rows=rows,
        side=Side(tuple(SERIES), tuple(side.sequence.shape[1:]), tuple(side.diagrams.shape[1:3]),
                  tuple(moments[0].tolist()), tuple(moments[1].tolist())))
    schema.save(out / SCHEMA_FILE)
    set_current(out.parent, version)
    return out, schema
