"""A customer's Phase-0 features as the students read them, and the facts a reason may state.

The bundle stores raw Phase-0 features (what a feature store would hold). ``Normalization`` turns
them into the training set's columns exactly as training did - it *is* the training set's
transform (``finai_models.phase0.normalize.Normalizer`` delegates here), so served and trained
inputs cannot drift apart. ``FactReader`` reads, from the same raw row, the few plain facts a
reason may quote ("card spending rose 15% over three months, mostly on transit"): every number a
customer reads comes from their own row, rounded once here, and the Safety Gate compares against
these values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

Facts = dict[str, int | float | str]


class Normalization:
    """z-score for continuous columns, pass-through for the rest, plus ``log1p`` copies (``_log``)."""

    def __init__(self, normalizer: Mapping[str, Any]):
        self.columns: list[str] = list(normalizer["columns"])
        self.continuous = np.array([k == "continuous" for k in normalizer["kinds"]], bool)
        self.mean = np.asarray(normalizer["mean"], np.float64)
        self.std = np.asarray(normalizer["std"], np.float64)
        index = {c: j for j, c in enumerate(self.columns)}
        self.log_index = np.array([index[c] for c in normalizer["log_columns"]], np.int64)
        self.output_columns = self.columns + [f"{c}_log" for c in normalizer["log_columns"]]

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """``[n, raw columns]`` -> ``[n, output columns]`` float32 (NaN stays NaN: the trees treat it as missing)."""
        x = np.asarray(raw, np.float64)
        out = x.copy()
        out[:, self.continuous] = (x[:, self.continuous] - self.mean[self.continuous]) / self.std[self.continuous]
        if len(self.log_index):
            out = np.concatenate([out, np.log1p(np.maximum(x[:, self.log_index], 0))], axis=1)
        return out.astype(np.float32)


class FactReader:
    """Plain facts of one raw feature row; a fact whose inputs are missing (NaN) is left out."""

    MIN_TRANSACTIONS = 5          # fewer recent transactions say nothing about where a customer spends
    RECENT_DAYS = 90              # "the last three months"

    def __init__(self, columns: Sequence[str], lag_vocab: Sequence[int], mcc_category: Mapping[int, str]):
        self.at = {c: j for j, c in enumerate(columns)}
        lags = sorted({c.split("_")[1] for c in columns if c.startswith("lag_")})
        self.lag = {f: np.array([self.at[f"lag_{k}_{f}"] for k in lags], np.int64)
                    for f in ("amount", "mcc", "days")} if lags else {}
        categories = sorted(set(mcc_category.values()))
        self.categories = np.array(categories + ["other"], object)
        other = len(categories)
        known = {c: i for i, c in enumerate(categories)}
        # class 0 = padding, 1..V = the vocabulary, V+1 = other codes
        self.class_category = np.array([other] + [known.get(mcc_category.get(int(m)), other) for m in lag_vocab]
                                       + [other], np.int64)

    def _get(self, row: np.ndarray, name: str) -> float | None:
        j = self.at.get(name)
        if j is None or not np.isfinite(row[j]):
            return None
        return float(row[j])

    def __call__(self, row: np.ndarray) -> Facts:
        g = self._get
        facts: Facts = {}

        def put(name: str, value: float | None, digits: int = 0) -> None:
            if value is not None and np.isfinite(value) and abs(value) < 1e12:   # a request may send anything
                facts[name] = int(round(value, digits))

        age = g(row, "age")
        if age and 0 < age < 130:                                 # Phase 0 writes 0 for an unknown age
            put("age", age)
        for name in ("tenure_months", "num_products", "acquisitions_12m"):
            put(name, g(row, name))
        log_income, income_group = g(row, "log_income"), g(row, "income_group_code")
        if log_income is not None and income_group and log_income < 30:
            put("income", float(np.expm1(log_income)), -2)
        if g(row, "frequency_12m"):
            put("recency_days", g(row, "recency_days"))
            online = g(row, "online_ratio_180d")
            put("online_ratio_pct", None if online is None else 100 * online)
            put("distinct_categories_180d", g(row, "distinct_mcc_180d"))
        spend, spend_180, count = g(row, "roll_90d_sum"), g(row, "roll_180d_sum"), g(row, "roll_90d_count")
        if spend is not None and count:
            put("spend_90d", spend)
            put("txn_count_90d", count)
            before = (spend_180 or 0.0) - spend
            if before >= 1.0:
                put("spend_change_pct", 100 * (spend / before - 1))
        facts.update(self._categories(row))
        return facts

    def _categories(self, row: np.ndarray) -> Facts:
        if not self.lag:
            return {}
        amount, cls, days = (row[self.lag[f]] for f in ("amount", "mcc", "days"))
        valid = (cls >= 1) & (cls < len(self.class_category)) & (cls == np.round(cls))   # 0 pads; junk is ignored
        recent = valid & (days <= self.RECENT_DAYS) & (amount > 0) & np.isfinite(amount)
        if recent.sum() < self.MIN_TRANSACTIONS:
            return {}
        spend = np.bincount(self.class_category[cls[recent].astype(np.int64)], weights=amount[recent],
                            minlength=len(self.categories))
        spend[-1] = 0.0                                           # "other" is not a category to name
        order = np.argsort(-spend, kind="stable")
        total = amount[recent].sum()
        facts: Facts = {}
        for rank, c in enumerate(order[:2], start=1):
            share = int(round(100 * spend[c] / total))
            if share <= 0:
                break
            facts[f"top_category_{rank}"] = str(self.categories[c])
            facts[f"top_category_{rank}_share_pct"] = share
        return facts
