"""Load raw Parquet months into DuckDB, one month replacing itself as a unit."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from finai_models import months as M
from finai_models.duck import fetch_one
from finai_models.errors import DataError

DUCKDB_TYPES = {
    pa.int16(): "SMALLINT", pa.int32(): "INTEGER", pa.int64(): "BIGINT", pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN", pa.string(): "VARCHAR", pa.date32(): "DATE", pa.timestamp("us"): "TIMESTAMP",
}


def duckdb_columns(schema: pa.Schema) -> dict[str, str]:
    return {f.name: DUCKDB_TYPES[f.type] for f in schema}


def schema_problems(actual: pa.Schema, expected: pa.Schema) -> list[str]:
    """Human-readable differences between a file's schema and the raw schema."""
    problems = []
    have = {f.name: f.type for f in actual}
    for f in expected:
        if f.name not in have:
            problems.append(f"column {f.name!r} is missing")
        elif have[f.name] != f.type:
            problems.append(f"column {f.name!r} is {have[f.name]}, expected {f.type}")
    problems += [f"unexpected column {name!r}" for name in have if name not in expected.names]
    return problems


def load_month(con: duckdb.DuckDBPyConnection, schema_name: str, table: str, parquet: Path, month: str,
               expected: pa.Schema) -> int:
    """Replace ``month`` of ``schema_name.table`` with the rows of ``parquet``; returns the row count.

    Delete and insert run in one transaction, so a month is either fully replaced or untouched.
    """
    parquet = Path(parquet)
    if not parquet.is_file():
        raise DataError(f"raw {table} month {month}: file {parquet} not found")
    problems = schema_problems(pq.read_schema(parquet), expected)
    if problems:
        raise DataError(f"raw {table} month {month} ({parquet}): schema changed: {'; '.join(problems)}")
    cols = duckdb_columns(expected)
    target = f"{schema_name}.{table}"
    con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema_name}")
    con.execute(f"CREATE TABLE IF NOT EXISTS {target} ({', '.join(f'{c} {t}' for c, t in cols.items())})")
    names = ", ".join(cols)
    day = M.first_day(month)
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {target} WHERE month = ?", [day])
        con.execute(f"INSERT INTO {target} ({names}) SELECT {names} FROM read_parquet(?)", [parquet.as_posix()])
        rows = fetch_one(con, f"SELECT count(*) FROM {target} WHERE month = ?", [day])[0]
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return rows


def preview_markdown(con: duckdb.DuckDBPyConnection, query: str, params: list | None = None) -> str:
    """A few rows as a Markdown table, for asset metadata in the UI."""
    rel = con.execute(query, params or [])
    names = [d[0] for d in rel.description]
    rows = rel.fetchall()
    lines = ["| " + " | ".join(names) + " |", "|" + "---|" * len(names)]
    lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def load_dataset(con: duckdb.DuckDBPyConnection, settings, months: list[str] | None = None) -> dict[str, int]:
    """Load every month (or the given ones) of the active raw dataset; returns rows per table.

    The Dagster raw assets do the same month by month with checks; this is for scripts,
    benchmarks and tests that need a warehouse without running the graph.
    """
    from finai_models.data.raw_schema import TABLES, schemas
    from finai_models.data.store import month_file, require_manifest

    manifest = require_manifest(settings.raw_dir)
    schema = settings.pipeline.warehouse.raw_schema
    expected = schemas(settings.products)
    rows = dict.fromkeys(TABLES, 0)
    for month in months or manifest["months"]:
        for table in TABLES:
            rows[table] += load_month(con, schema, table, month_file(settings.raw_dir, table, month), month,
                                      expected[table])
    return rows
