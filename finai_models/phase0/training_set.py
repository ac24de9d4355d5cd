"""The training set: temporal split, normalization fitted on train, and the feature schema.

Rows are (customer, snapshot month) pairs of the split's months, at most ``max_rows_per_month``
each (seeded sample, the same customers in both passes). Pass 1 accumulates training statistics
month by month; pass 2 writes ``train/validation/test.parquet`` with normalized features (plus
``_log`` copies) and the 13 labels, with row-aligned side tensors (monthly sequence, persistence
diagrams; ``side_inputs``) as ``<part>.<tensor>.npy``. ``feature_schema.json`` records column order, group ranges,
expert routing and the normalizer, so training and serving read columns the same way.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from finai_models.phase0.normalize import MomentAccumulator, Normalizer, code_vocabularies
from finai_models.phase0.side_inputs import SideInputs, month_side_inputs, save_side, sequence_moments, standardise

SPLITS = ("train", "validation", "test")


@dataclass
class MonthRows:
    customer_id: np.ndarray
    features: np.ndarray          # float32 [n, d] raw (not normalized)
    labels: dict[str, np.ndarray]  # task -> float64 [n], nan where unobservable


def split_months(settings: Settings) -> dict[str, list[str]]:
    return {part: M.month_range(*settings.split[part]) for part in SPLITS}


def feature_columns(settings: Settings, month: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names in config group order and each group's [start, end) range."""
    columns, ranges = [], []
    for group in settings.feature_groups:
        names = pq.read_schema(feature_path(settings, group.name, month)).names[2:]
        ranges.append({"name": group.name, "start": len(columns), "end": len(columns) + len(names)})
        columns += names
    return columns, ranges


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


def expert_routing(settings: Settings, ranges: list[dict[str, Any]], columns: list[str],
                   normalizer: Normalizer) -> dict[str, list[int]]:
    """Column indices each expert reads at layer 0: its groups' columns and their ``_log`` copies."""
    out_index = {c: j for j, c in enumerate(normalizer.output_columns)}
    routing: dict[str, list[int]] = {}
    for group, span in zip(settings.feature_groups, ranges, strict=True):
        names = columns[span["start"]:span["end"]]
        indices = [out_index[c] for c in names] + [out_index[f"{c}_log"] for c in names
                                                   if f"{c}_log" in out_index]
        for expert in group.experts:
            routing.setdefault(expert, []).extend(indices)
    return {e: sorted(ix) for e, ix in routing.items()}


def build_training_set(con: duckdb.DuckDBPyConnection, settings: Settings, state_version: str,
                       log=print) -> tuple[Path, dict[str, Any]]:
    max_rows = int(settings.pipeline.training_set.max_rows_per_month)
    months = split_months(settings)
    columns, ranges = feature_columns(settings, months["train"][0])
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
        fields += [pa.field(f"label__{t.name}", pa.float64()) for t in settings.tasks]
        schema = pa.schema(fields)
        tmp = out / f"{part}.parquet.tmp"
        rows[part] = 0
        with pq.ParquetWriter(tmp, schema, compression="zstd", compression_level=1) as writer:
            for month in months[part]:
                data = read_month(con, settings, month, max_rows)
                x = normalizer.transform(data.features)
                arrays = [pa.array(data.customer_id), pa.array([month] * len(data.customer_id))]
                arrays += [pa.array(x[:, j]) for j in range(x.shape[1])]
                arrays += [pa.array(data.labels[t.name]) for t in settings.tasks]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                rows[part] += len(data.customer_id)
                sides.append(month_side_inputs(settings, month, data.customer_id))
        side = SideInputs.concat(sides)
        moments = moments or sequence_moments(side.sequence, side.sequence_mask)   # train comes first
        save_side(standardise(side, *moments), out, part)
        os.replace(tmp, out / f"{part}.parquet")
        log(f"training set {part}: {rows[part]:,} rows from {len(months[part])} months")
    schema_doc = {
        "version": version, "state_version": state_version, "columns": out_columns, "groups": ranges,
        "log_columns": normalizer.log_columns, "experts": expert_routing(settings, ranges, columns, normalizer),
        "tasks": [{"name": t.name, "type": t.type, "classes": t.classes, "column": f"label__{t.name}"}
                  for t in settings.tasks],
        "split": {p: list(settings.split[p]) for p in SPLITS}, "rows": rows,
        "normalizer": normalizer.to_json(), "codes": code_vocabularies(normalizer.to_json()),
        "side": {"sequence_features": list(SERIES), "sequence_shape": list(side.sequence.shape[1:]),
                 "sequence_mean": moments[0].tolist(), "sequence_std": moments[1].tolist(),
                 "diagram_shape": list(side.diagrams.shape[1:3])},
    }
    tmp = out / "feature_schema.json.tmp"
    tmp.write_text(json.dumps(schema_doc, indent=1))
    os.replace(tmp, out / "feature_schema.json")
    set_current(out.parent, version)
    return out, schema_doc
