"""Blocking, partitioned checks on the raw tables: schema, nulls, row counts, referential integrity."""


from collections.abc import Callable

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.raw.assets import WAREHOUSE_POOL
from finai_assets.defs.resources import FinAIConfig
from finai_models.config import Settings
from finai_models.data import raw_checks
from finai_models.data.raw_schema import NULLABLE, TABLES, schemas
from finai_models.data.store import require_manifest

Evaluate = Callable[[duckdb.DuckDBPyConnection, Settings, str, str, str], raw_checks.CheckOutcome]


def _schema(con, s, schema, table, month):
    return raw_checks.check_schema(con, schema, table, schemas(s.products)[table])


def _not_null(con, s, schema, table, month):
    required = [n for n in schemas(s.products)[table].names if n not in NULLABLE[table]]
    return raw_checks.check_not_null(con, schema, table, month, required, s.pipeline.raw_checks.max_null_fraction)


def _row_count(con, s, schema, table, month):
    source = require_manifest(s.raw_dir)["rows"][table].get(month, -1)
    minimum = s.pipeline.raw_checks.min_rows_per_month
    if table == "card_transactions" and not require_manifest(s.raw_dir)["has_card_transactions"]:
        minimum = 0
    return raw_checks.check_row_count(con, schema, table, month, source, minimum)


def _customers_exist(con, s, schema, table, month):
    return raw_checks.check_customers_exist(con, schema, table, month)


def _raw_check(table: str, suffix: str, description: str, evaluate: Evaluate) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["raw", table]), name=f"{table}_{suffix}", description=description, blocking=True,
        partitions_def=snapshot_months, pool=WAREHOUSE_POOL,
    )
    def _check(context: dg.AssetCheckExecutionContext, finai: FinAIConfig,
               warehouse: DuckDBResource) -> dg.AssetCheckResult:
        s = finai.load()
        schema = s.pipeline.warehouse.raw_schema
        with warehouse.get_connection() as con:
            outcome = evaluate(con, s, schema, table, context.partition_key)
        return dg.AssetCheckResult(passed=outcome.passed, description=outcome.description,
                                   metadata=outcome.metadata)

    return _check


raw_table_checks = [
    check
    for table in TABLES
    for check in (
        _raw_check(table, "has_expected_schema", "Warehouse columns and types match the raw schema.", _schema),
        _raw_check(table, "required_columns_not_null", "No nulls in columns the raw schema requires.", _not_null),
        _raw_check(table, "row_count_matches_source", "The month holds exactly the source file's rows.", _row_count),
    )
] + [
    _raw_check(table, "customers_exist", "Every customer_id exists in the month's customers extract.",
               _customers_exist)
    for table in ("monthly_snapshots", "card_transactions")
]
