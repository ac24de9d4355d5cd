"""Checks on the raw warehouse tables, shared by the Dagster asset checks and the tests.

Each returns a CheckOutcome; none of them raise on bad data, so the caller decides what fails.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from finai_models import months as M
from finai_models.data.warehouse import duckdb_columns
from finai_models.duck import fetch_one


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def check_schema(con: duckdb.DuckDBPyConnection, schema: str, table: str, expected: pa.Schema) -> CheckOutcome:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, table]).fetchall()
    actual = dict(rows)
    want = duckdb_columns(expected)
    problems = [f"{c}: missing" for c in want if c not in actual]
    problems += [f"{c}: {actual[c]} (expected {t})" for c, t in want.items() if c in actual and actual[c] != t]
    problems += [f"{c}: unexpected" for c in actual if c not in want]
    return CheckOutcome(not problems, "; ".join(problems) or f"{len(want)} columns as expected",
                        {"problems": problems, "columns": len(actual)})


def check_not_null(con: duckdb.DuckDBPyConnection, schema: str, table: str, month: str,
                   columns: list[str], max_fraction: float) -> CheckOutcome:
    exprs = ", ".join(f"count(*) - count({c})" for c in columns)
    counts = fetch_one(con, f"SELECT count(*), {exprs} FROM {schema}.{table} WHERE month = ?",
                         [M.first_day(month)])
    total, nulls = counts[0], dict(zip(columns, counts[1:], strict=True))
    bad = {c: n for c, n in nulls.items() if total and n / total > max_fraction}
    text = ", ".join(f"{c}: {n:,} nulls" for c, n in bad.items()) or f"no nulls in {len(columns)} required columns"
    return CheckOutcome(not bad, text, {"null_counts": {c: int(n) for c, n in nulls.items() if n}, "rows": int(total)})


def check_row_count(con: duckdb.DuckDBPyConnection, schema: str, table: str, month: str,
                    expected: int, minimum: int) -> CheckOutcome:
    rows = fetch_one(con, f"SELECT count(*) FROM {schema}.{table} WHERE month = ?", [M.first_day(month)])[0]
    ok = rows == expected and rows >= minimum
    return CheckOutcome(ok, f"{rows:,} rows in the warehouse, {expected:,} in the source (minimum {minimum:,})",
                        {"warehouse_rows": int(rows), "source_rows": int(expected)})


def check_customers_exist(con: duckdb.DuckDBPyConnection, schema: str, table: str, month: str) -> CheckOutcome:
    """Every customer_id of ``table`` for the month is in that month's customers extract."""
    day = M.first_day(month)
    orphans, example = fetch_one(con, f"""
        SELECT count(*), min(t.customer_id) FROM {schema}.{table} t
        ANTI JOIN (SELECT customer_id FROM {schema}.customers WHERE month = $1) c USING (customer_id)
        WHERE t.month = $1""", [day])
    text = f"{orphans:,} rows reference customers missing from customers (e.g. {example})" if orphans \
        else "every customer exists"
    return CheckOutcome(orphans == 0, text, {"orphan_rows": int(orphans)})
