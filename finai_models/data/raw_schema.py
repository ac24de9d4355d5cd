"""The raw layer: three monthly tables, one Parquet file per table and month.

Every table carries ``month`` (the first day of its calendar month) so a month can be replaced
in the warehouse as a unit. Nullable columns are listed; every other column must be non-null.
"""

from __future__ import annotations

import pyarrow as pa

TABLES = ("customers", "monthly_snapshots", "card_transactions")
SEGMENTS = ("01-TOP", "02-PARTICULARES", "03-UNIVERSITARIO", "UNKNOWN")

CUSTOMERS = pa.schema([
    ("customer_id", pa.int64()),
    ("month", pa.date32()),
    ("birth_year", pa.int16()),
    ("gender", pa.string()),
    ("region", pa.string()),
    ("channel", pa.string()),
    ("join_date", pa.date32()),
])

CARD_TRANSACTIONS = pa.schema([
    ("customer_id", pa.int64()),
    ("month", pa.date32()),
    ("ts", pa.timestamp("us")),
    ("amount", pa.float64()),
    ("mcc", pa.int16()),
    ("merchant_id", pa.int64()),
    ("channel", pa.string()),
])

# income: unknown for part of the customers (renta is blank for ~20% of Santander rows);
# birth_year: Santander's age column is blank for a few customers.
NULLABLE = {"monthly_snapshots": ("income",), "customers": ("birth_year",), "card_transactions": ()}


def snapshot_schema(products: tuple[str, ...]) -> pa.Schema:
    """monthly_snapshots: one row per customer present in the month, a flag per product."""
    return pa.schema(
        [("customer_id", pa.int64()), ("month", pa.date32()), ("is_active", pa.bool_()),
         ("income", pa.float64()), ("segment", pa.string())]
        + [(product_column(p), pa.bool_()) for p in products]
    )


def product_column(product: str) -> str:
    return f"prod_{product}"


def schemas(products: tuple[str, ...]) -> dict[str, pa.Schema]:
    return {"customers": CUSTOMERS, "monthly_snapshots": snapshot_schema(products),
            "card_transactions": CARD_TRANSACTIONS}
