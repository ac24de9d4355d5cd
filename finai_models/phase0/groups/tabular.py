"""State groups computed from the customer's own recent history: demographics, holdings,
transaction behaviour and product-lifecycle counts."""

from __future__ import annotations

import duckdb
import numpy as np

from finai_models.phase0.groups.base import FeatureGroupModel, per_customer
from finai_models.phase0.inputs import MonthInputs

CATEGORICAL = ("gender", "segment", "region", "channel")
AGE_EDGES = np.array([25, 40, 55, 70])
INCOME_EDGES = np.log1p(np.array([30_000, 80_000, 200_000]))


class Demographics(FeatureGroupModel):
    """age, log income, tenure, is_active, num_products + 6 categorical codes.

    Codes of gender/segment/region/channel come from the training months (0 = unseen or unknown);
    age and income groups are fixed buckets (last code = unknown).
    """

    name = "demographics"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.vocab: dict[str, np.ndarray] = {}

    def fit(self, train, con):
        for key in CATEGORICAL:
            self.vocab[key] = np.unique(np.concatenate([x.categorical[key].astype(str) for x in train]))

    def _codes(self, key: str, values: np.ndarray) -> np.ndarray:
        vocab = self.vocab[key]
        pos = np.searchsorted(vocab, values.astype(str))
        known = (pos < len(vocab)) & (vocab[np.minimum(pos, len(vocab) - 1)] == values.astype(str))
        return np.where(known, pos + 1, 0)

    def transform(self, x, con):
        s = x.series[:, -1]
        log_income = s[:, x.series_index("log_income")]
        income_known = s[:, x.series_index("income_known")] > 0
        age = x.age
        age_group = np.where(np.isnan(age), len(AGE_EDGES) + 1, np.searchsorted(AGE_EDGES, np.nan_to_num(age)))
        income_group = np.where(income_known, np.searchsorted(INCOME_EDGES, log_income) + 1, 0)
        columns = [np.nan_to_num(age, nan=0.0), log_income, x.tenure_months, s[:, x.series_index("is_active")],
                   s[:, x.series_index("num_products")]]
        columns += [self._codes(k, x.categorical[k]) for k in CATEGORICAL] + [age_group, income_group]
        return np.stack(columns, axis=1).astype(np.float32)

    def state_dict(self):
        return {f"vocab_{k}": v.astype(str) for k, v in self.vocab.items()}

    def load_state_dict(self, state):
        self.vocab = {k[6:]: v for k, v in state.items()}

    def column_names(self):
        return ["age", "log_income", "tenure_months", "is_active", "num_products",
                *(f"{k}_code" for k in CATEGORICAL), "age_group_code", "income_group_code"]


class ProductHoldings(FeatureGroupModel):
    """The 24 product flags at t."""

    name = "product_holdings"

    def transform(self, x, con):
        return x.holdings[:, -1].astype(np.float32)

    def column_names(self):
        return [f"holds_{p}" for p in self.settings.products]


class TxnBehavior(FeatureGroupModel):
    """RFM, amounts, time of day, stability and breadth of card use over the last 12 months."""

    name = "txn_behavior"
    NAMES = ("recency_days", "frequency_12m", "log_monetary_12m", "avg_amount_12m", "median_amount_180d",
             "monthly_txns", "morning_ratio", "afternoon_ratio", "evening_ratio", "night_ratio",
             "count_stability", "distinct_mcc_180d", "distinct_merchants_180d", "online_ratio_180d")

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        spend = x.series[..., x.series_index("spend")]
        count = x.series[..., x.series_index("txn_count")]
        months = np.maximum(x.present.sum(axis=1), 1)
        total_count, total_spend = count.sum(axis=1), spend.sum(axis=1)
        off = x.txn_offsets
        n_txn = np.diff(off)
        horizon = float(self.settings.phase0.txn_days)
        recency = per_customer(x.txn_days_before, off, np.minimum, horizon * 2)
        median = _median_per_customer(x.txn_amount, off)
        hour = x.txn_hour.astype(np.int64)
        ratios = []
        for lo, hi in ((6, 12), (12, 18), (18, 24), (0, 6)):
            in_block = ((hour >= lo) & (hour < hi)).astype(np.float64)
            ratios.append(per_customer(in_block, off, np.add, 0.0) / np.maximum(n_txn, 1))
        mean_c = count.sum(axis=1) / months
        var_c = ((count - mean_c[:, None]) ** 2 * x.present).sum(axis=1) / months
        stability = 1.0 / (1.0 + np.sqrt(var_c) / np.maximum(mean_c, 1e-6))
        distinct_mcc = _distinct_per_customer(x.txn_mcc.astype(np.int64), off)
        distinct_merchants = _distinct_per_customer(x.txn_merchant, off)
        online = per_customer(x.txn_online.astype(np.float64), off, np.add, 0.0) / np.maximum(n_txn, 1)
        columns = [recency, total_count, np.log1p(total_spend), total_spend / np.maximum(total_count, 1), median,
                   mean_c, *ratios, stability, distinct_mcc, distinct_merchants, online]
        return np.stack(columns, axis=1).astype(np.float32)

    def column_names(self):
        return list(self.NAMES)


def _owner_keys(values: np.ndarray, offsets: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted int64 keys ``owner << bits | value`` (values must be non-negative and < 2**bits), and owners."""
    counts = np.diff(offsets)
    owner = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    keys = np.sort((owner << bits) | values.astype(np.int64))
    return keys, keys >> bits


def _median_per_customer(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Median per customer (0 where none), to the cent: one sort of packed (customer, cents) keys."""
    counts = np.diff(offsets)
    cents = np.clip(np.round(values.astype(np.float64) * 100), 0, 2**30 - 1)
    keys, _ = _owner_keys(cents, offsets, 30)
    ordered = (keys & (2**30 - 1)).astype(np.float64) / 100
    out = np.zeros(len(counts))
    has = counts > 0
    lo = offsets[:-1][has] + (counts[has] - 1) // 2
    hi = offsets[:-1][has] + counts[has] // 2
    out[has] = (ordered[lo] + ordered[hi]) / 2
    return out


def _distinct_per_customer(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Number of distinct non-negative values per customer, from one sort of packed keys."""
    n = len(offsets) - 1
    if not offsets[-1]:
        return np.zeros(n)
    keys, owner = _owner_keys(values, offsets, 36)
    first = np.concatenate([[True], keys[1:] != keys[:-1]])
    return np.bincount(owner[first], minlength=n).astype(np.float64)


class DerivedTemporal(FeatureGroupModel):
    """Product lifecycle over the lookback: acquisitions, closures, months observed, diversity."""

    name = "derived_temporal"

    def transform(self, x, con):
        held = x.holdings
        both = x.present[:, 1:] & x.present[:, :-1]
        acquired = (held[:, 1:] & ~held[:, :-1]) & both[..., None]
        closed = (~held[:, 1:] & held[:, :-1]) & both[..., None]
        columns = [acquired.sum(axis=(1, 2)), closed.sum(axis=(1, 2)), x.present.sum(axis=1),
                   held.any(axis=1).sum(axis=1)]
        return np.stack(columns, axis=1).astype(np.float32)

    def column_names(self):
        return ["acquisitions_12m", "closures_12m", "months_observed", "product_diversity_12m"]
