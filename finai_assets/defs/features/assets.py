"""Phase 0 features: month inputs, the fitted state, and one asset per feature group.

Heavy libraries (torch, gudhi, torch-geometric) are imported inside asset bodies through the
group registry, so loading this code location stays fast.
"""

import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.raw.assets import WAREHOUSE_POOL, card_transactions, customers, monthly_snapshots
from finai_assets.defs.resources import FinAIConfig
from finai_assets.settings import settings as load_settings
from finai_models.phase0.features import compute_group, inputs_path, load_inputs, write_group
from finai_models.phase0.inputs import build_month_inputs
from finai_models.phase0.state import fit_state, load_group

LOOKBACK = dg.TimeWindowPartitionMapping(start_offset=-11, end_offset=0, allow_nonexistent_upstream_partitions=True)
RAW = (customers, monthly_snapshots, card_transactions)


@dg.asset(
    key=["phase0", "month_inputs"], group_name="features", partitions_def=snapshot_months, kinds={"numpy"},
    deps=[dg.AssetDep(a, partition_mapping=LOOKBACK) for a in RAW], pool=WAREHOUSE_POOL, code_version="inputs-v1",
)
def month_inputs(
    context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource
) -> dg.MaterializeResult:
    """What every feature group may see of month t: 12 months of series, holdings, 180 days of
    transactions, and the lineage (latest timestamp read per table) for the Class-A check."""
    s = finai.load()
    month = context.partition_key
    with warehouse.get_connection() as con:
        x = build_month_inputs(con, s, month)
    path = inputs_path(s, month)
    path.parent.mkdir(parents=True, exist_ok=True)
    x.save(path)
    return dg.MaterializeResult(metadata={
        "customers": dg.MetadataValue.int(x.n), "transactions": dg.MetadataValue.int(int(x.txn_offsets[-1])),
        "lineage": x.lineage, "path": dg.MetadataValue.path(str(path)),
    })


class FittedStateConfig(dg.Config):
    """Months to fit on; empty = the last ``fit_months`` training months of the dataset config."""

    months: list[str] = []


@dg.asset(key=["phase0", "fitted_state"], group_name="features", deps=list(RAW), kinds={"numpy"},
          pool=WAREHOUSE_POOL, code_version="state-v1")
def fitted_state(context: dg.AssetExecutionContext, config: FittedStateConfig, finai: FinAIConfig,
                 warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Scalers, vocabularies, GMM, HMMs, SSM weights, LightGCN and embeddings, fitted on training
    months only and versioned; every month and serving transform with the same state."""
    s = finai.load()
    with warehouse.get_connection() as con:
        state = fit_state(con, s, config.months or None, log=context.log.info)
    manifest = state.manifest
    return dg.MaterializeResult(metadata={
        "version": state.version, "fit_months": manifest["fit_months"], "vocab_months": manifest["vocab_months"],
        "train_months": manifest["train_months"], "fit_seconds": manifest["fit_seconds"],
        "path": dg.MetadataValue.path(str(state.folder)),
    })


def _group_asset(name: str, dim: int) -> dg.AssetsDefinition:
    @dg.asset(
        key=["features", name], group_name="features", partitions_def=snapshot_months,
        deps=[month_inputs, fitted_state], kinds={"parquet"}, pool=WAREHOUSE_POOL, code_version="phase0-v1",
        metadata={"dim": dim}, description=f"Feature group {name} ({dim} columns) for the snapshot month.",
    )
    def _asset(
        context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource
    ) -> dg.MaterializeResult:
        s = finai.load()
        month = context.partition_key
        group, version = load_group(s, name)
        x = load_inputs(s, month)
        started = time.perf_counter()
        with warehouse.get_connection() as con:
            table = compute_group(group, x, con)
        path = write_group(s, name, month, table)
        seconds = time.perf_counter() - started
        values = table.drop_columns(["customer_id", "month"])
        constant = sum(1 for c in values.columns if c.num_chunks and len(set(c.to_numpy()[:5000])) <= 1)
        return dg.MaterializeResult(metadata={
            "dagster/partition_row_count": dg.MetadataValue.int(table.num_rows), "columns": dim,
            "state_version": version, "seconds": round(seconds, 2), "constant_columns_in_first_5000": constant,
            "path": dg.MetadataValue.path(str(path)),
        })

    return _asset


feature_group_assets = [_group_asset(g.name, g.dim) for g in load_settings().feature_groups]
