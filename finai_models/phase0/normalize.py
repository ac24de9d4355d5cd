"""3-stage normalization fitted on training rows only.

1. Power-law columns (non-negative, skewed, many distinct values) get a ``<col>_log`` copy.
2. Continuous columns are z-scored with training mean and standard deviation.
3. Binary, probability and code columns pass through unchanged.

Column kinds follow the data and the column names: values only in {0, 1} are binary; names ending in
``_code``, ``_id``, ``_state`` or ``_cluster`` (and lag-tensor ``_mcc``/``_hour``) are codes; names
containing ``_prob`` or ``posterior`` are probabilities. Statistics are accumulated month by month,
so the training split never has to fit in memory at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finai_serving.features import Normalization

CODE_SUFFIXES = ("_code", "_id", "_state", "_cluster", "_mcc", "_hour")
PROB_MARKERS = ("_prob", "posterior")
MIN_DISTINCT_FOR_LOG = 20
MIN_SKEW_FOR_LOG = 2.0


def column_kind(name: str) -> str | None:
    """Kind implied by the name alone, or None when the data decides."""
    if name.endswith(CODE_SUFFIXES):
        return "code"
    if any(m in name for m in PROB_MARKERS):
        return "probability"
    return None


@dataclass
class MomentAccumulator:
    """Running count, sum, sum of squares and cubes per column, plus a 0/1 and distinct-value probe."""

    columns: list[str]
    n: int = 0
    s1: np.ndarray = field(init=False)
    s2: np.ndarray = field(init=False)
    s3: np.ndarray = field(init=False)
    minimum: np.ndarray = field(init=False)
    only_binary: np.ndarray = field(init=False)
    distinct: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        d = len(self.columns)
        self.s1, self.s2, self.s3 = np.zeros(d), np.zeros(d), np.zeros(d)
        self.minimum = np.full(d, np.inf)
        self.only_binary = np.ones(d, bool)
        self.distinct = np.zeros(d, np.int64)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, np.float64)
        self.n += len(x)
        self.s1 += x.sum(axis=0)
        self.s2 += (x ** 2).sum(axis=0)
        self.s3 += (x ** 3).sum(axis=0)
        self.minimum = np.minimum(self.minimum, x.min(axis=0, initial=np.inf))
        self.only_binary &= ((x == 0) | (x == 1)).all(axis=0)
        probe = x[: min(len(x), 5000)]
        sorted_probe = np.sort(probe, axis=0)
        counts = (np.diff(sorted_probe, axis=0) != 0).sum(axis=0) + (len(probe) > 0)
        self.distinct = np.maximum(self.distinct, counts)


@dataclass
class Normalizer:
    columns: list[str]
    kinds: list[str]                 # continuous | binary | code | probability
    mean: np.ndarray
    std: np.ndarray
    log_columns: list[str]           # columns that get a ``_log`` copy appended

    @classmethod
    def fit(cls, acc: MomentAccumulator) -> Normalizer:
        n = max(acc.n, 1)
        mean = acc.s1 / n
        var = np.maximum(acc.s2 / n - mean ** 2, 0)
        std = np.sqrt(var)
        third = acc.s3 / n - 3 * mean * acc.s2 / n + 2 * mean ** 3
        skew = np.where(std > 1e-12, third / np.maximum(std, 1e-12) ** 3, 0)
        kinds, logs = [], []
        for j, name in enumerate(acc.columns):
            kind = column_kind(name) or ("binary" if acc.only_binary[j] else "continuous")
            kinds.append(kind)
            if kind == "continuous" and acc.minimum[j] >= 0 and skew[j] > MIN_SKEW_FOR_LOG \
                    and acc.distinct[j] > MIN_DISTINCT_FOR_LOG:
                logs.append(name)
        std = np.where(std < 1e-8, 1.0, std)
        return cls(list(acc.columns), kinds, mean, std, logs)

    @property
    def output_columns(self) -> list[str]:
        return self.columns + [f"{c}_log" for c in self.log_columns]

    def transform(self, x: np.ndarray) -> np.ndarray:
        """The served transform (``finai_serving.features.Normalization``): one implementation for both."""
        return Normalization(self.to_json())(x)

    def to_json(self) -> dict[str, Any]:
        return {"columns": self.columns, "kinds": self.kinds, "mean": self.mean.tolist(), "std": self.std.tolist(),
                "log_columns": self.log_columns}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Normalizer:
        return cls(data["columns"], data["kinds"], np.array(data["mean"]), np.array(data["std"]),
                   data["log_columns"])
