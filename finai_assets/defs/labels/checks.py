"""Blocking label checks: Class A (windows after t) and Class B (no label inside any feature group)."""

import dagster as dg
import numpy as np
import pyarrow.parquet as pq
from dagster_duckdb import DuckDBResource

from finai_assets.defs.features.assets import feature_group_assets
from finai_assets.defs.labels.assets import LABEL_SCHEMA, labels
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.raw.assets import WAREHOUSE_POOL
from finai_assets.defs.resources import FinAIConfig
from finai_models import months as M
from finai_models.phase0.features import feature_path
from finai_models.phase0.leakage import early_label_windows, label_correlation_findings, label_named_columns


@dg.asset_check(asset=labels, blocking=True, partitions_def=snapshot_months, pool=WAREHOUSE_POOL,
                description="Class A: every label window opens at t+1 or later.")
def label_windows_after_snapshot(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    with warehouse.get_connection() as con:
        rows = con.execute(f"SELECT task, first_offset, last_offset FROM {LABEL_SCHEMA}.label_lineage WHERE month = ?",
                           [M.first_day(context.partition_key)]).fetchall()
    lineage = {task: (first, last) for task, first, last in rows}
    findings = early_label_windows(lineage)
    return dg.AssetCheckResult(passed=bool(rows) and not findings,
                               description="; ".join(findings) or f"{len(rows)} label windows open after t",
                               metadata={"windows": {k: list(v) for k, v in lineage.items()}})


@dg.asset_check(asset=labels, blocking=True, partitions_def=snapshot_months, pool=WAREHOUSE_POOL,
                additional_deps=feature_group_assets,
                description="Class B: no feature group holds a label, a label-named column, a feature with "
                            "|corr| >= threshold with a label, or a single feature that predicts a label alone.")
def labels_not_in_features(context: dg.AssetCheckExecutionContext, finai: FinAIConfig,
                           warehouse: DuckDBResource) -> dg.AssetCheckResult:
    s = finai.load()
    month = context.partition_key
    with warehouse.get_connection() as con:
        table = con.sql(f"SELECT * FROM {LABEL_SCHEMA}.labels WHERE month = DATE '{M.first_day(month)}' "
                        "ORDER BY customer_id").to_arrow_table()
    ids = table["customer_id"].to_numpy()
    columns, blocks = [], []
    for group in s.feature_groups:
        part = pq.read_table(feature_path(s, group.name, month))
        if not np.array_equal(part["customer_id"].to_numpy(), ids):
            return dg.AssetCheckResult(passed=False,
                                       description=f"{group.name} rows do not match the labels' customers")
        part = part.drop_columns(["customer_id", "month"])
        columns += part.column_names
        blocks.append(np.stack([c.to_numpy() for c in part.columns], axis=1))
    features = np.concatenate(blocks, axis=1)
    rng = np.random.default_rng(0)
    rows = rng.choice(len(ids), size=min(len(ids), s.pipeline.leakage.scan_rows), replace=False)
    label_values = {t.name: table[t.name].to_numpy(zero_copy_only=False).astype(float)[rows] for t in s.tasks}
    observable = [t for t in s.tasks if not np.isnan(label_values[t.name]).all()]
    findings = label_named_columns(columns, s.tasks)
    findings += label_correlation_findings(features[rows], columns, label_values, observable,
                                           s.pipeline.leakage.max_abs_corr,
                                           s.pipeline.leakage.max_single_feature_auc)
    return dg.AssetCheckResult(
        passed=not findings,
        description="; ".join(findings[:5]) or f"{len(columns)} columns clean against {len(observable)} labels",
        metadata={"findings": findings[:50], "columns_scanned": len(columns), "rows_scanned": len(rows),
                  "labels_scanned": [t.name for t in observable]},
    )
