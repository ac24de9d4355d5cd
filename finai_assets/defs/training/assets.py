"""The training set: temporal split, train-fitted normalization and the feature schema."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from finai_assets.defs.features.assets import feature_group_assets, fitted_state
from finai_assets.defs.labels.assets import labels
from finai_assets.defs.raw.assets import WAREHOUSE_POOL
from finai_assets.defs.resources import FinAIConfig
from finai_models.phase0.state import current_version
from finai_models.phase0.training_set import build_training_set


@dg.asset(key=["training", "training_set"], group_name="training", kinds={"parquet"},
          deps=[labels, fitted_state, *feature_group_assets], pool=WAREHOUSE_POOL, code_version="training-set-v2")
def training_set(
    context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """train < validation < test by snapshot month, normalized with training statistics, with the
    schema (column order, group ranges, expert routing) the teacher and the students read."""
    s = finai.load()
    with warehouse.get_connection() as con:
        folder, schema = build_training_set(con, s, current_version(s), log=context.log.info)
    return dg.MaterializeResult(metadata={
        "version": schema.version, "rows": dict(schema.rows), "columns": len(schema.columns),
        "log_copies": len(schema.log_columns),
        "expert_input_dims": {e: len(ix) for e, ix in schema.experts.items()},
        "split": {p: list(m) for p, m in schema.split.items()}, "path": dg.MetadataValue.path(str(folder)),
    })
