"""Raw layer: the dataset on disk (synthetic or Santander) and its three tables in DuckDB by month."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig, RawSource
from finai_models import months as M
from finai_models.data.generate import generate_synthetic
from finai_models.data.raw_schema import TABLES, schemas
from finai_models.data.santander import convert_santander
from finai_models.data.store import month_file, require_manifest
from finai_models.data.warehouse import load_month, preview_markdown

WAREHOUSE_POOL = "duckdb_warehouse"

class RawDatasetConfig(dg.Config):
    """Launchpad overrides for the synthetic generator; 0 keeps the dataset config's value."""

    customers: int = 0
    seed: int = 0
    overwrite: bool = False

@dg.asset(group_name="raw", kinds={"parquet"}, code_version="raw-v1")
def raw_dataset(
    context: dg.AssetExecutionContext, config: RawDatasetConfig, finai: FinAIConfig
) -> dg.MaterializeResult:
    """The raw panel as Parquet months: simulated, or converted from a Santander CSV.

    Idempotent: a folder that already holds the same dataset is reused, never rewritten.
    """
    s = finai.load()
    ds = s.dataset
    if ds.source == "synthetic":
        gen = ds.generator
        start, end = s.months
        manifest = generate_synthetic(
            s, s.raw_dir, config.customers or gen.customers, M.diff(end, start) + 1,
            config.seed or gen.seed, start=start, overwrite=config.overwrite, progress=False)
    else:
        manifest = convert_santander(s, s.workdir / ds.santander.csv, s.raw_dir,
                                     overwrite=config.overwrite, progress=False)
    totals = {t: sum(manifest["rows"][t].values()) for t in TABLES}
    context.log.info(f"raw dataset {s.raw_dir}: {len(manifest['months'])} months, {totals}")
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(s.raw_dir)),
        "fingerprint": manifest["fingerprint"],
        "months": f"{manifest['months'][0]} .. {manifest['months'][-1]} ({len(manifest['months'])})",
        "has_card_transactions": manifest["has_card_transactions"],
        **{f"rows_{t}": dg.MetadataValue.int(n) for t, n in totals.items()},
    })

def _raw_table(table: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=table, key_prefix="raw", group_name="raw", partitions_def=snapshot_months, deps=[raw_dataset],
        kinds={"duckdb"}, pool=WAREHOUSE_POOL, backfill_policy=dg.BackfillPolicy.single_run(),
        metadata={"partition_expr": "month"}, code_version="raw-v1",
        description=f"raw.{table} in the DuckDB warehouse; loading a month replaces that month.",
    )
    def _asset(
        context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource, raw_source: RawSource
    ) -> dg.MaterializeResult:
        s = finai.load()
        require_manifest(s.raw_dir)
        for month in context.partition_keys:
            raw_source.fetch(s.raw_dir, table, month)
        schema = s.pipeline.warehouse.raw_schema
        expected = schemas(s.products)[table]
        rows = {}
        with warehouse.get_connection() as con:
            for month in context.partition_keys:
                rows[month] = load_month(con, schema, table, month_file(s.raw_dir, table, month), month, expected)
                context.log.info(f"{schema}.{table} {month}: {rows[month]:,} rows")
            last = context.partition_keys[-1]
            preview = preview_markdown(con, f"SELECT * FROM {schema}.{table} WHERE month = ? LIMIT 5",
                                       [M.first_day(last)])
        metadata = {"rows_by_month": rows, "preview": dg.MetadataValue.md(preview), "table": f"{schema}.{table}"}
        if len(rows) == 1:
            metadata["dagster/partition_row_count"] = dg.MetadataValue.int(next(iter(rows.values())))
        return dg.MaterializeResult(metadata=metadata)

    return _asset

customers, monthly_snapshots, card_transactions = (_raw_table(t) for t in TABLES)
