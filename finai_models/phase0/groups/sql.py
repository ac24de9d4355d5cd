"""Groups whose relational work runs in DuckDB: lag tensor, rolling windows and the multi-hots.

Each reads the raw warehouse tables for partitions at or before t, returns long or wide rows
ordered by customer, and is aligned to ``MonthInputs.customer_id`` here.
"""

from __future__ import annotations

import datetime as dt

import duckdb
import numpy as np

from finai_models import months as M
from finai_models.data.raw_schema import product_column
from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import MonthInputs, month_end
from finai_models.phase0.vocab import fit_mcc_vocab

LAG_FIELDS = ("amount", "mcc", "days", "hour")
WINDOWS = (7, 30, 90, 180)
ROLL_STATS = ("sum", "mean", "std", "count", "active_days")


def _align(ids: np.ndarray, rows: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Row index in ``ids`` of each SQL row, dropping rows of customers not present at t."""
    rows_ids = np.asarray(rows["customer_id"], np.int64)
    pos = np.minimum(np.searchsorted(ids, rows_ids), max(len(ids) - 1, 0))
    keep = ids[pos] == rows_ids if len(ids) else np.zeros(len(rows_ids), bool)
    return pos[keep], {k: np.asarray(v)[keep] for k, v in rows.items()}


def _recent_txn_sql(settings, month: str) -> str:
    """Transactions of the lookback partitions within ``txn_days`` of the end of month t."""
    schema = settings.pipeline.warehouse.raw_schema
    end = month_end(month)
    start = end - dt.timedelta(days=settings.phase0.txn_days)
    first = M.first_day(M.shift(month, -7))
    return f"""
        SELECT customer_id, ts, amount, mcc, epoch(TIMESTAMP '{end}' - ts) / 86400.0 AS days
        FROM {schema}.card_transactions
        WHERE month BETWEEN DATE '{first}' AND DATE '{M.first_day(month)}' AND ts >= TIMESTAMP '{start}'"""


class _VocabGroup(FeatureGroupModel):
    vocab_size: int

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.vocab = np.zeros(0, np.int64)

    def fit(self, train, con):
        self.vocab = np.array(fit_mcc_vocab(con, self.settings, self.vocab_size), np.int64)

    def state_dict(self):
        return {"vocab": self.vocab}

    def load_state_dict(self, state):
        self.vocab = state["vocab"]

    def _vocab_case(self, column: str, other: int) -> str:
        whens = " ".join(f"WHEN {int(c)} THEN {i + 1}" for i, c in enumerate(self.vocab))
        return f"CASE {column} {whens} ELSE {other} END"


class TxnLagTensor(_VocabGroup):
    """The last K transactions before the end of t, newest first: amount, MCC class, days ago, hour.

    MCC class: 1..V for the training vocabulary, V+1 for others, 0 for padding.
    """

    name = "txn_lag_tensor"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.vocab_size = int(settings.phase0.mcc_vocab_size)
        self.k = dim // len(LAG_FIELDS)

    CHUNK_CUSTOMERS = 150_000   # one window query per id range keeps DuckDB's sort within memory at 1M

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        out = np.zeros((x.n, self.k, len(LAG_FIELDS)), np.float32)
        bounds = x.customer_id[::self.CHUNK_CUSTOMERS].tolist() + [int(x.customer_id[-1]) + 1] if x.n else []
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            rows = con.sql(f"""
                SELECT customer_id, rn, amount, {self._vocab_case('mcc', len(self.vocab) + 1)} AS mcc_class, days,
                       hour(ts) AS hour
                FROM (SELECT *, row_number() OVER (PARTITION BY customer_id ORDER BY ts DESC) AS rn
                      FROM ({_recent_txn_sql(self.settings, x.month)}) WHERE customer_id >= {lo} AND customer_id < {hi})
                WHERE rn <= {self.k}""").fetchnumpy()
            pos, rows = _align(x.customer_id, rows)
            lag = rows["rn"].astype(np.int64) - 1
            for j, col in enumerate(("amount", "mcc_class", "days", "hour")):
                out[pos, lag, j] = rows[col]
        return out.reshape(x.n, -1)

    def column_names(self):
        return [f"lag_{k + 1:03d}_{f}" for k in range(self.k) for f in LAG_FIELDS]


class TxnRollingStats(FeatureGroupModel):
    """Sum, mean, std, count and active days of spending over 7/30/90/180-day windows."""

    name = "txn_rolling_stats"

    def transform(self, x, con):
        aggs = []
        for w in WINDOWS:
            f = f"FILTER (WHERE days <= {w})"
            aggs += [f"coalesce(sum(amount) {f}, 0)", f"coalesce(avg(amount) {f}, 0)",
                     f"coalesce(stddev_samp(amount) {f}, 0)", f"count(*) {f}",
                     f"count(DISTINCT floor(days)) {f}"]
        cols = ", ".join(f"{a} AS c{i}" for i, a in enumerate(aggs))
        rows = con.sql(f"SELECT customer_id, {cols} FROM ({_recent_txn_sql(self.settings, x.month)}) "
                       "GROUP BY customer_id").fetchnumpy()
        out = np.zeros((x.n, len(aggs)), np.float32)
        pos, rows = _align(x.customer_id, rows)
        for i in range(len(aggs)):
            out[pos, i] = rows[f"c{i}"]
        return out

    def column_names(self):
        return [f"roll_{w}d_{s}" for w in WINDOWS for s in ROLL_STATS]


class MccTop30Multihot(_VocabGroup):
    """Presence of each of the top-30 training-month MCCs in the last 180 days + out-of-vocab count."""

    name = "mcc_top30_multihot"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.vocab_size = int(settings.phase0.mcc_multihot_size)

    def transform(self, x, con):
        other = len(self.vocab) + 1
        rows = con.sql(f"""
            SELECT customer_id, {self._vocab_case('mcc', other)} AS cls, count(*) AS c
            FROM ({_recent_txn_sql(self.settings, x.month)}) GROUP BY ALL""").fetchnumpy()
        out = np.zeros((x.n, self.dim), np.float32)
        pos, rows = _align(x.customer_id, rows)
        cls = rows["cls"].astype(np.int64)
        known = cls < other
        out[pos[known], cls[known] - 1] = 1.0
        out[pos[~known], self.dim - 1] = rows["c"][~known]
        return out

    def column_names(self):
        return [f"mcc_{int(c)}" for c in self.vocab] + ["mcc_other_count"] if len(self.vocab) else \
            super().column_names()


class RecentAcquisitionMultihot(FeatureGroupModel):
    """Products acquired in t-2..t (held at m, not at m-1): the past side of the acquisition labels."""

    name = "recent_acquisition_multihot"

    def transform(self, x, con):
        schema = self.settings.pipeline.warehouse.raw_schema
        mask = " + ".join(f"({product_column(p)}::BIGINT << {k})" for k, p in enumerate(self.settings.products))
        t = M.first_day(x.month)
        rows = con.sql(f"""
            WITH h AS (SELECT customer_id, month, {mask} AS mask FROM {schema}.monthly_snapshots
                       WHERE month BETWEEN DATE '{M.first_day(M.shift(x.month, -3))}' AND DATE '{t}')
            SELECT cur.customer_id, bit_or(cur.mask & ~prev.mask) AS acquired
            FROM h cur JOIN h prev ON prev.customer_id = cur.customer_id AND prev.month = cur.month - INTERVAL 1 MONTH
            GROUP BY cur.customer_id""").fetchnumpy()
        out = np.zeros((x.n, len(self.settings.products)), np.float32)
        pos, rows = _align(x.customer_id, rows)
        bits = rows["acquired"].astype(np.int64)
        for k in range(out.shape[1]):
            out[pos, k] = (bits >> k) & 1
        return out

    def column_names(self):
        return [f"acquired_3m_{p}" for p in self.settings.products]
