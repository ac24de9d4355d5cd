"""Small DuckDB 2.0 helpers (results must be fully fetched before the connection is reused)."""

from __future__ import annotations

from typing import Any

import duckdb


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple | None:
    """The first row of a query, or None; the result is consumed so the connection stays usable."""
    rows = con.execute(sql, params or []).fetchall()
    return rows[0] if rows else None
