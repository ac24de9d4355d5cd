"""What every Phase-0 feature group may see of snapshot month t: data at or before the end of t.

``build_month_inputs`` runs a few DuckDB queries over the raw warehouse tables and returns numpy
arrays in one row order (customers present at t, ascending id):

- monthly series over the lookback window (t-L+1 .. t, oldest first) with a presence mask,
- product holdings per month,
- the customer's static attributes at t,
- the transactions of the last ``txn_days`` days, flat and grouped by customer (offsets).

Sources are selected by their partition month, and the lineage (the latest timestamp actually
read from each table) is recorded, so a mislabelled future row shows up in the Class-A check
instead of silently entering a feature.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np

from finai_models import months as M
from finai_models.config import Settings
from finai_models.data.raw_schema import product_column
from finai_models.errors import FinAIError

SERIES = ("spend", "txn_count", "distinct_mcc", "distinct_l2", "avg_amount", "online_share", "night_share",
          "num_products", "is_active", "log_income", "income_known")


@dataclass
class MonthInputs:
    month: str
    customer_id: np.ndarray          # int64 [N], ascending
    series: np.ndarray               # float32 [N, L, len(SERIES)], zeros where absent
    present: np.ndarray              # bool [N, L]
    holdings: np.ndarray             # bool [N, L, K]
    age: np.ndarray                  # float32 [N], nan when unknown
    tenure_months: np.ndarray        # float32 [N]
    categorical: dict[str, np.ndarray]  # gender, segment, region, channel: str [N]
    txn_offsets: np.ndarray          # int64 [N+1]: customer i owns rows offsets[i]:offsets[i+1]
    txn_days_before: np.ndarray      # float32: days from the transaction to the end of month t (> 0)
    txn_amount: np.ndarray           # float32
    txn_mcc: np.ndarray              # int16 ISO code
    txn_l2: np.ndarray               # int16 index into the MCC hierarchy's L2 list (-1 unknown)
    txn_l1: np.ndarray               # int8 L1 index (-1 unknown)
    txn_hour: np.ndarray             # int8
    txn_merchant: np.ndarray         # int64
    txn_online: np.ndarray           # bool
    lineage: dict[str, str] = field(default_factory=dict)  # table -> latest timestamp read (ISO)

    @property
    def n(self) -> int:
        return len(self.customer_id)

    def series_index(self, name: str) -> int:
        return SERIES.index(name)

    def subset(self, rows: np.ndarray) -> MonthInputs:
        """The same month for a subset of customers (for fitting on a sample)."""
        rows = np.sort(rows)
        counts = np.diff(self.txn_offsets)[rows]
        take = np.concatenate([np.arange(self.txn_offsets[r], self.txn_offsets[r + 1]) for r in rows]) \
            if len(rows) else np.zeros(0, np.int64)
        take = take.astype(np.int64)
        return MonthInputs(
            month=self.month, customer_id=self.customer_id[rows], series=self.series[rows],
            present=self.present[rows], holdings=self.holdings[rows], age=self.age[rows],
            tenure_months=self.tenure_months[rows],
            categorical={k: v[rows] for k, v in self.categorical.items()},
            txn_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            txn_days_before=self.txn_days_before[take], txn_amount=self.txn_amount[take],
            txn_mcc=self.txn_mcc[take], txn_l2=self.txn_l2[take], txn_l1=self.txn_l1[take],
            txn_hour=self.txn_hour[take], txn_merchant=self.txn_merchant[take], txn_online=self.txn_online[take],
            lineage=dict(self.lineage),
        )

    def save(self, path: Path) -> None:
        arrays = {k: v for k, v in self.__dict__.items() if isinstance(v, np.ndarray)}
        arrays.update({f"cat_{k}": v.astype(str) for k, v in self.categorical.items()})
        meta = np.array([self.month] + [f"{k}={v}" for k, v in self.lineage.items()])
        tmp = Path(path).with_suffix(".tmp.npz")
        np.savez(tmp, _meta=meta, **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> MonthInputs:
        with np.load(path, allow_pickle=False) as z:
            meta = list(z["_meta"])
            arrays = {k: z[k] for k in z.files if k != "_meta" and not k.startswith("cat_")}
            categorical = {k[4:]: z[k].astype(object) for k in z.files if k.startswith("cat_")}
        lineage = dict(item.split("=", 1) for item in meta[1:])
        return cls(month=str(meta[0]), categorical=categorical, lineage=lineage, **arrays)


def month_end(month: str) -> dt.datetime:
    """The first instant after month t: every feature source must be strictly before it."""
    return dt.datetime.combine(M.first_day(M.shift(month, 1)), dt.time())


def register_mcc_table(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """A temp table mapping each MCC code of the hierarchy to its L2 and L1 index."""
    mcc = settings.mcc
    rows = ", ".join(f"({c}, {l2}, {mcc.l2_to_l1[l2]})" for c, l2 in zip(mcc.codes, mcc.code_l2, strict=True))
    con.execute(f"CREATE OR REPLACE TEMP TABLE mcc_map AS SELECT * FROM (VALUES {rows}) t(mcc, l2, l1)")


def loaded_months(con: duckdb.DuckDBPyConnection, schema: str) -> dict[str, set[str]]:
    """Months present in each raw table of the warehouse."""
    return {table: {r[0] for r in con.execute(
        f"SELECT DISTINCT strftime(month, '%Y-%m') FROM {schema}.{table}").fetchall()}
        for table in ("customers", "monthly_snapshots", "card_transactions")}


def require_months(con: duckdb.DuckDBPyConnection, settings: Settings, months: list[str], why: str) -> None:
    """Fail naming the raw months (within the dataset's range) that the warehouse lacks."""
    schema = settings.pipeline.warehouse.raw_schema
    first, last = settings.months
    wanted = [m for m in months if first <= m <= last]
    missing = []
    for table, have in loaded_months(con, schema).items():
        if table == "card_transactions" and not have:  # a dataset without card data (Santander)
            continue
        missing += [f"{table} {m}" for m in wanted if m not in have]
    if missing:
        raise FinAIError(f"{why} needs raw months that are not in the warehouse: {', '.join(missing[:6])}"
                         f"{' ...' if len(missing) > 6 else ''}; materialize raw/* for them first")


def month_customers(con: duckdb.DuckDBPyConnection, settings: Settings, month: str) -> np.ndarray:
    """Ids of the customers present at ``month``, ascending."""
    schema = settings.pipeline.warehouse.raw_schema
    rows = con.execute(f"SELECT customer_id FROM {schema}.monthly_snapshots WHERE month = ? ORDER BY 1",
                       [M.first_day(month)]).fetchnumpy()
    return np.asarray(rows["customer_id"], np.int64)


def build_month_inputs(con: duckdb.DuckDBPyConnection, settings: Settings, month: str,
                       customers: np.ndarray | None = None) -> MonthInputs:
    """Inputs of month t for every present customer, or only for ``customers`` (a fitting sample)."""
    schema = settings.pipeline.warehouse.raw_schema
    lookback = settings.phase0.lookback_months
    require_months(con, settings, M.month_range(M.shift(month, -(lookback - 1)), month), f"Phase 0 of {month}")
    first = M.first_day(M.shift(month, -(lookback - 1)))
    t = M.first_day(month)
    end = month_end(month)
    txn_start = end - dt.timedelta(days=settings.phase0.txn_days)
    register_mcc_table(con, settings)
    only = ""
    if customers is not None:
        con.execute("CREATE OR REPLACE TEMP TABLE inputs_sample AS SELECT unnest($1::BIGINT[]) AS customer_id",
                    [np.asarray(customers, np.int64).tolist()])
        only = "AND customer_id IN (SELECT customer_id FROM inputs_sample)"
    products = settings.products
    n_products = " + ".join(f"{product_column(p)}::INT" for p in products)

    base = con.execute(f"""
        SELECT c.customer_id, c.birth_year, c.join_date, c.gender, s.segment, c.region, c.channel
        FROM {schema}.customers c JOIN {schema}.monthly_snapshots s USING (customer_id, month)
        WHERE c.month = $1 {only} ORDER BY customer_id""", [t]).fetchnumpy()
    ids = base["customer_id"].astype(np.int64)
    n = len(ids)

    monthly = con.execute(f"""
        WITH tx AS (
            SELECT t.customer_id, t.month, sum(t.amount) AS spend, count(*) AS txn_count,
                   count(DISTINCT t.mcc) AS distinct_mcc, count(DISTINCT m.l2) AS distinct_l2,
                   avg((t.channel = 'online')::INT) AS online_share, avg((hour(t.ts) < 6)::INT) AS night_share,
                   max(t.ts) AS last_ts
            FROM {schema}.card_transactions t LEFT JOIN mcc_map m USING (mcc)
            WHERE t.month BETWEEN $1 AND $2 {only} GROUP BY ALL)
        SELECT s.customer_id, s.month, coalesce(tx.spend, 0) AS spend, coalesce(tx.txn_count, 0) AS txn_count,
               coalesce(tx.distinct_mcc, 0) AS distinct_mcc, coalesce(tx.distinct_l2, 0) AS distinct_l2,
               coalesce(tx.spend / tx.txn_count, 0) AS avg_amount, coalesce(tx.online_share, 0) AS online_share,
               coalesce(tx.night_share, 0) AS night_share, ({n_products}) AS num_products,
               s.is_active::INT AS is_active, coalesce(ln(1 + s.income), 0) AS log_income,
               (s.income IS NOT NULL)::INT AS income_known, datediff('month', $2, s.month) AS step,
               {', '.join(map(product_column, products))}
        FROM {schema}.monthly_snapshots s LEFT JOIN tx USING (customer_id, month)
        WHERE s.month BETWEEN $1 AND $2 {only}""", [first, t]).fetchnumpy()
    rows = np.searchsorted(ids, monthly["customer_id"])
    keep = (rows < n) & (ids[np.minimum(rows, n - 1)] == monthly["customer_id"])
    steps = np.asarray(monthly["step"], np.int64) + lookback - 1
    rows, steps = rows[keep], steps[keep]
    series = np.zeros((n, lookback, len(SERIES)), np.float32)
    for j, name in enumerate(SERIES):
        series[rows, steps, j] = np.asarray(monthly[name], np.float32)[keep]
    present = np.zeros((n, lookback), bool)
    present[rows, steps] = True
    holdings = np.zeros((n, lookback, len(products)), bool)
    for k, p in enumerate(products):
        holdings[rows, steps, k] = np.asarray(monthly[product_column(p)], bool)[keep]

    txn = con.execute(f"""
        SELECT t.customer_id, epoch(TIMESTAMP '{end}' - t.ts) / 86400.0 AS days_before, t.amount, t.mcc,
               coalesce(m.l2, -1) AS l2, coalesce(m.l1, -1) AS l1, hour(t.ts) AS hour, t.merchant_id,
               t.channel = 'online' AS online
        FROM {schema}.card_transactions t LEFT JOIN mcc_map m USING (mcc)
        WHERE t.month BETWEEN $1 AND $2 AND t.ts >= $3 {only}
        ORDER BY t.customer_id, t.ts""", [M.first_day(M.shift(month, -7)), t, txn_start]).fetchnumpy()
    txn_rows = np.searchsorted(ids, txn["customer_id"])
    in_base = (txn_rows < n) & (ids[np.minimum(txn_rows, max(n - 1, 0))] == txn["customer_id"]) if n else \
        np.zeros(len(txn_rows), bool)
    txn_rows = txn_rows[in_base]
    offsets = np.zeros(n + 1, np.int64)
    np.add.at(offsets, txn_rows + 1, 1)
    offsets = np.cumsum(offsets)

    latest = con.execute(f"""
        SELECT (SELECT max(ts) FROM {schema}.card_transactions WHERE month BETWEEN $1 AND $2),
               (SELECT max(month) FROM {schema}.monthly_snapshots WHERE month BETWEEN $1 AND $2)""",
                         [first, t]).fetchall()[0]
    year = M.parse(month)[0]
    birth = base["birth_year"]
    age = np.where(np.ma.getmaskarray(birth), np.nan, year - np.ma.filled(birth, 0).astype(np.float32))
    join = base["join_date"].astype("datetime64[D]")
    tenure = ((np.datetime64(t, "D") - join).astype(np.float32) / 30.44).clip(min=0)

    def col(name, dtype):
        return np.asarray(txn[name])[in_base].astype(dtype)

    return MonthInputs(
        month=month, customer_id=ids, series=series, present=present, holdings=holdings,
        age=age.astype(np.float32), tenure_months=tenure.astype(np.float32),
        categorical={k: np.asarray(base[k]).astype(object) for k in ("gender", "segment", "region", "channel")},
        txn_offsets=offsets, txn_days_before=col("days_before", np.float32), txn_amount=col("amount", np.float32),
        txn_mcc=col("mcc", np.int16), txn_l2=col("l2", np.int16), txn_l1=col("l1", np.int8),
        txn_hour=col("hour", np.int8), txn_merchant=col("merchant_id", np.int64), txn_online=col("online", bool),
        lineage={"card_transactions": str(latest[0]), "monthly_snapshots": str(latest[1])},
    )
