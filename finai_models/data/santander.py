"""Read the Kaggle Santander Product Recommendation CSV (``train_ver2.csv`` format) into the raw schema.

The file has one row per customer and month (``fecha_dato``, ``ncodpers``), demographics, and the
24 ``ind_*_ult1`` product flags. It carries no card transactions: the adapter writes empty
``card_transactions`` months and records ``has_card_transactions: false`` in the manifest, so the
feature groups that need transactions can degrade explicitly. DuckDB does the parsing and the
checks; a bad file fails with one line naming the column, the line and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb

from finai_models import months as M
from finai_models.config import Settings
from finai_models.data.raw_schema import CARD_TRANSACTIONS, SEGMENTS, product_column, schemas
from finai_models.data.store import DatasetWriter, file_sha256, fingerprint
from finai_models.duck import fetch_one
from finai_models.errors import DataError
from finai_models.progress import progress_bar

DATE_COLUMNS = ("fecha_dato", "fecha_alta")


def _sql_map(column: str, mapping: dict[str, str], default: str) -> str:
    cases = " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in mapping.items())
    return f"CASE trim({column}) {cases} ELSE '{default}' END"


def _first_bad(con: duckdb.DuckDBPyConnection, column: str, ok: str, allow_blank: bool) -> tuple | None:
    blank = f"OR nullif(trim({column}), '') IS NULL OR trim({column}) = 'NA'" if allow_blank else ""
    return fetch_one(con, f"SELECT line, {column} FROM src WHERE NOT ({ok} {blank}) ORDER BY line LIMIT 1")


def _validate(con: duckdb.DuckDBPyConnection, csv: Path, settings: Settings) -> None:
    header = [c for c in con.sql("SELECT * FROM src LIMIT 0").columns if c != "line"]
    cfg = settings.dataset.santander
    required = list(cfg.required_columns) + list(settings.product_columns)
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"santander CSV {csv}: missing column(s) {', '.join(repr(c) for c in missing)}")
    if fetch_one(con, "SELECT count(*) FROM src")[0] == 0:
        raise DataError(f"santander CSV {csv}: no data rows")
    checks = [
        ("fecha_dato", "try_strptime(trim(fecha_dato), '%Y-%m-%d') IS NOT NULL", False, "is not a date (YYYY-MM-DD)"),
        ("fecha_alta", "try_strptime(trim(fecha_alta), '%Y-%m-%d') IS NOT NULL", True, "is not a date (YYYY-MM-DD)"),
        ("ncodpers", "try_cast(trim(ncodpers) AS BIGINT) IS NOT NULL", False, "is not an integer customer code"),
        ("age", "try_cast(trim(age) AS INTEGER) BETWEEN 0 AND 130", True, "is not an age"),
        ("renta", "try_cast(trim(renta) AS DOUBLE) >= 0", True, "is not an income"),
    ]
    for column, ok, allow_blank, what in checks:
        bad = _first_bad(con, column, ok, allow_blank)
        if bad:
            raise DataError(f"santander CSV {csv} line {bad[0]}: {column} {bad[1]!r} {what}")
    dup = fetch_one(con, "SELECT ncodpers, fecha_dato, count(*) FROM src GROUP BY ALL HAVING count(*) > 1 LIMIT 1")
    if dup:
        raise DataError(f"santander CSV {csv}: customer {dup[0].strip()} appears {dup[2]} times on {dup[1].strip()}")


def convert_santander(settings: Settings, csv: Path, out: Path, overwrite: bool = False,
                      progress: bool = True) -> dict[str, Any]:
    """Convert ``csv`` into a raw dataset folder at ``out``; returns the manifest."""
    csv = Path(csv)
    if not csv.is_file():
        raise DataError(f"santander CSV {csv}: file not found")
    cfg = settings.dataset.santander
    identity = {"source": "santander_csv", "csv_sha256": file_sha256(csv),
                "config": fingerprint({"gender_map": cfg.gender_map, "segment_map": cfg.segment_map})}
    writer = DatasetWriter(Path(out), identity)
    if not overwrite and (existing := writer.existing()) is not None:
        return existing

    con = duckdb.connect()
    try:
        con.sql(f"""CREATE TEMP VIEW src AS
            SELECT row_number() OVER () + 1 AS line, *
            FROM read_csv('{csv.as_posix()}', header = true, all_varchar = true)""")
        try:
            _validate(con, csv, settings)
        except duckdb.Error as exc:
            raise DataError(f"santander CSV {csv}: unreadable ({str(exc).splitlines()[0]})") from None
        products = settings.products
        flags = ", ".join(
            f"coalesce(try_cast(trim({col}) AS INTEGER), 0) = 1 AS {product_column(name)}"
            for name, col in zip(products, settings.product_columns, strict=True))
        segment = _sql_map("segmento", {k: v for k, v in cfg.segment_map.items() if v in SEGMENTS}, "UNKNOWN")
        con.sql(f"""CREATE TEMP TABLE typed AS
            SELECT try_cast(trim(ncodpers) AS BIGINT) AS customer_id,
                   date_trunc('month', strptime(trim(fecha_dato), '%Y-%m-%d'))::DATE AS month,
                   try_cast(trim(age) AS INTEGER) AS age,
                   {_sql_map('sexo', cfg.gender_map, 'U')} AS gender,
                   coalesce(nullif(trim(nomprov), ''), 'UNKNOWN') AS region,
                   coalesce(nullif(trim(canal_entrada), ''), 'UNKNOWN') AS channel,
                   coalesce(try_strptime(trim(fecha_alta), '%Y-%m-%d')::DATE,
                            min(date_trunc('month', strptime(trim(fecha_dato), '%Y-%m-%d'))::DATE)
                                OVER (PARTITION BY trim(ncodpers))) AS join_date,
                   trim(ind_actividad_cliente) = '1' AS is_active,
                   try_cast(trim(renta) AS DOUBLE) AS income,
                   {segment} AS segment,
                   {flags}
            FROM src""")
        months = [r[0].strftime("%Y-%m") for r in con.sql("SELECT DISTINCT month FROM typed ORDER BY 1").fetchall()]
        writer.open(overwrite=overwrite)
        tables = schemas(products)
        prod_cols = ", ".join(product_column(p) for p in products)
        with progress_bar(total=len(months), desc="santander", unit="month", enabled=progress) as bar:
            for month in months:
                day = M.first_day(month)
                customers = con.sql(f"""
                    SELECT customer_id, month, (year(month) - age)::SMALLINT AS birth_year, gender, region, channel,
                           join_date
                    FROM typed WHERE month = DATE '{day}' ORDER BY customer_id""").to_arrow_table()
                snapshots = con.sql(f"""
                    SELECT customer_id, month, is_active, income, segment, {prod_cols}
                    FROM typed WHERE month = DATE '{day}' ORDER BY customer_id""").to_arrow_table()
                writer.write("customers", month, customers.cast(tables["customers"]))
                writer.write("monthly_snapshots", month, snapshots.cast(tables["monthly_snapshots"]))
                writer.write("card_transactions", month, CARD_TRANSACTIONS.empty_table())
                bar.update(1)
    finally:
        con.close()
    return writer.close({"has_card_transactions": False})

