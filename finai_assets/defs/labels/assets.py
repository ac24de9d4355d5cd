"""The 13 labels per snapshot month, in DuckDB, from months strictly after t."""


import dagster as dg
import numpy as np
import pyarrow as pa
from dagster_duckdb import DuckDBResource

from finai_assets.defs.features.assets import RAW, fitted_state
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.raw.assets import WAREHOUSE_POOL
from finai_assets.defs.resources import FinAIConfig
from finai_models import months as M
from finai_models.phase0.labels import compute_labels
from finai_models.phase0.state import current_manifest

LABEL_WINDOW = dg.TimeWindowPartitionMapping(start_offset=-2, end_offset=6, allow_nonexistent_upstream_partitions=True)
LABEL_SCHEMA = "phase0"


def _summary(table: pa.Table, tasks) -> str:
    lines = ["| task | type | rows | nulls | distribution |", "|---|---|---|---|---|"]
    for task in tasks:
        col = table[task.name]
        values = col.drop_null().to_numpy()
        if not len(values):
            text = "not observable yet"
        elif task.type == "regression":
            text = f"mean {values.mean():.3f}, sd {values.std():.3f}"
        elif task.type == "binary":
            text = f"prevalence {values.mean():.3f}"
        else:
            counts = np.bincount(values.astype(int), minlength=task.classes)
            top = np.argsort(-counts)[:5]
            text = ", ".join(f"{c}: {counts[c] / counts.sum():.2f}" for c in top)
        lines.append(f"| {task.name} | {task.type} | {len(col)} | {col.null_count} | {text} |")
    return "\n".join(lines)


@dg.asset(
    key=["labels", "labels"], group_name="labels", partitions_def=snapshot_months, kinds={"duckdb"},
    deps=[fitted_state, *[dg.AssetDep(a, partition_mapping=LABEL_WINDOW) for a in RAW]], pool=WAREHOUSE_POOL,
    metadata={"partition_expr": "month"}, code_version="labels-v1",
)
def labels(context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """phase0.labels: one row per customer present at t; null where the window is not observable yet."""
    s = finai.load()
    month = context.partition_key
    vocab = current_manifest(s)["mcc_vocab"]
    with warehouse.get_connection() as con:
        result = compute_labels(con, s, month, vocab)
        day = M.first_day(month)
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {LABEL_SCHEMA}")
        con.register("_labels", result.table)
        con.execute(f"CREATE TABLE IF NOT EXISTS {LABEL_SCHEMA}.labels AS SELECT * FROM _labels WITH NO DATA")
        con.execute(f"""CREATE TABLE IF NOT EXISTS {LABEL_SCHEMA}.label_lineage
                        (month DATE, task VARCHAR, first_offset INTEGER, last_offset INTEGER, observable BOOLEAN)""")
        con.execute("BEGIN TRANSACTION")
        con.execute(f"DELETE FROM {LABEL_SCHEMA}.labels WHERE month = ?", [day])
        con.execute(f"INSERT INTO {LABEL_SCHEMA}.labels SELECT * FROM _labels")
        con.execute(f"DELETE FROM {LABEL_SCHEMA}.label_lineage WHERE month = ?", [day])
        con.executemany(f"INSERT INTO {LABEL_SCHEMA}.label_lineage VALUES (?, ?, ?, ?, ?)",
                        [[day, t, w[0], w[1], result.observable[t]] for t, w in result.lineage.items()])
        con.execute("COMMIT")
        con.unregister("_labels")
    return dg.MaterializeResult(metadata={
        "dagster/partition_row_count": dg.MetadataValue.int(result.table.num_rows),
        "observable_tasks": sum(result.observable.values()),
        "summary": dg.MetadataValue.md(_summary(result.table, s.tasks)),
    })
