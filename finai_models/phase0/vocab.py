"""Vocabularies learnt on training months only (MCC classes for next_mcc and the multi-hot)."""

from __future__ import annotations

import duckdb

from finai_models import months as M
from finai_models.config import Settings


def fit_mcc_vocab(con: duckdb.DuckDBPyConnection, settings: Settings, size: int) -> list[int]:
    """The ``size`` most frequent MCC codes of the training months, most frequent first."""
    schema = settings.pipeline.warehouse.raw_schema
    first, last = settings.split["train"]
    rows = con.execute(f"""
        SELECT mcc FROM {schema}.card_transactions WHERE month BETWEEN $1 AND $2
        GROUP BY mcc ORDER BY count(*) DESC, mcc LIMIT {int(size)}""",
                       [M.first_day(first), M.first_day(last)]).fetchall()
    return [int(r[0]) for r in rows]
