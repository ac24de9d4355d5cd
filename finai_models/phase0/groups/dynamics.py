"""Dynamics of each customer's own history: velocities, EMAs, persistence, trend, exploration.

The reference "LNN" and bandit statistics ran across rows (customers), so a customer's value
depended on who happened to sit next to it. Every operator here runs along the customer's own
monthly series (months t-11..t, only months where the customer is present) or over the
customer's own transactions of the last 180 days, so values are independent of row order.

For each of spend, txn_count and distinct_mcc (scale-free: divided by the series' own mean
over present months, 0 where that mean is 0):
- velocity_1m / velocity_3m: (x_t - x_{t-1}) / level and (x_t - x_{t-3}) / level (0 where a
  month is absent),
- ema_010 / ema_030 / ema_050: exponential moving average over present months, oldest first,
  / level (1 for a constant series),
- time_constant: 1 / (1 - |rho_1|) from the lag-1 autocorrelation (0 when undefined: fewer than
  three present months or no variation),
- trend_slope: least-squares slope per month / level.

Exploration/exploitation over the last 180 days of transactions: the share of the last 90
days' transactions in MCCs (and, separately, merchants) the customer did not use in days
90-180 -- trying new categories differs from trying new shops in known ones -- and the share
of the customer's most used MCC. From the monthly spend over present months: a UCB-style score
log1p((mean + std) / s), a regret proxy (max - mean) / max, and the acceleration
(x_t - 2 x_{t-1} + x_{t-2}) / level. The only fitted value is s, the median positive monthly
spend of the training sample, so the UCB score is comparable across customers.
"""

from __future__ import annotations

import duckdb
import numpy as np

from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import MonthInputs

TRACKED = ("spend", "txn_count", "distinct_mcc")
PER_SERIES = ("velocity_1m", "velocity_3m", "ema_010", "ema_030", "ema_050", "time_constant", "trend_slope")
ALPHAS = (0.1, 0.3, 0.5)
EXTRA = ("mcc_exploration_rate", "merchant_exploration_rate", "top_mcc_share", "spend_ucb", "spend_regret",
         "spend_acceleration")
RECENT_DAYS = 90.0
MAX_RHO = 0.99      # caps the time constant at 100 months
CHUNK = 200_000


def _relative(values: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``values / level``, 0 where the level is 0."""
    return np.where(level > 0, values / np.where(level > 0, level, 1.0), 0.0)


def series_dynamics(x: np.ndarray, present: np.ndarray) -> np.ndarray:
    """The ``PER_SERIES`` columns for one monthly series ``x [n, L]`` (oldest first) with its mask."""
    n, months = x.shape
    x = np.where(present, x, 0.0)
    count = present.sum(1)
    level = x.sum(1) / np.maximum(count, 1)

    def lag_diff(lag):
        ok = present[:, -1] & present[:, -1 - lag]
        return np.where(ok, x[:, -1] - x[:, -1 - lag], 0.0)

    emas = []
    for alpha in ALPHAS:
        ema = np.zeros(n)
        seen = np.zeros(n, bool)
        for m in range(months):
            step = np.where(seen, alpha * x[:, m] + (1 - alpha) * ema, x[:, m])
            ema = np.where(present[:, m], step, ema)
            seen |= present[:, m]
        emas.append(_relative(ema, level))

    centred = np.where(present, x - level[:, None], 0.0)
    both = present[:, 1:] & present[:, :-1]
    cov1 = (centred[:, 1:] * centred[:, :-1] * both).sum(1)
    var = (centred ** 2).sum(1)
    defined = (count >= 3) & (var > 1e-12)
    rho = np.clip(np.where(defined, cov1 / np.where(defined, var, 1.0), 0.0), -MAX_RHO, MAX_RHO)
    time_constant = np.where(defined, 1.0 / (1.0 - np.abs(rho)), 0.0)

    index = np.arange(months, dtype=np.float64)
    mean_index = (index * present).sum(1) / np.maximum(count, 1)
    di = np.where(present, index - mean_index[:, None], 0.0)
    denom = (di ** 2).sum(1)
    slope = np.where(denom > 0, (di * centred).sum(1) / np.where(denom > 0, denom, 1.0), 0.0)

    return np.stack([_relative(lag_diff(1), level), _relative(lag_diff(3), level), *emas, time_constant,
                     _relative(slope, level)], axis=1)


def key_groups(keys: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Transactions grouped by (customer, key) with one sort, no hashing.

    Returns the sort order, the start of every group in sorted order and each group's customer
    (groups come out ordered by customer)."""
    n = len(offsets) - 1
    owner = np.repeat(np.arange(n, dtype=np.int64), np.diff(offsets))
    keys = keys.astype(np.int64)
    low = int(keys.min(initial=0))
    span = int(keys.max(initial=0)) - low + 1
    if span * max(n, 1) >= 2 ** 62:                 # ids too sparse to pack: compact them first
        _, keys = np.unique(keys, return_inverse=True)
        low, span = 0, int(keys.max(initial=0)) + 1
    pair = owner * span + (keys.reshape(-1) - low)
    order = np.argsort(pair)
    pair = pair[order]
    starts = np.flatnonzero(np.r_[True, pair[1:] != pair[:-1]]) if len(pair) else np.zeros(0, np.int64)
    return order, starts, owner[order][starts]


def exploration(days_before: np.ndarray, groups: tuple[np.ndarray, np.ndarray, np.ndarray], n: int) -> np.ndarray:
    """Share of each customer's last-90-day transactions whose key (MCC or merchant) the customer
    did not use in days 90-180; 0 for a customer without recent transactions."""
    order, starts, owner = groups
    if not len(order):
        return np.zeros(n)
    recent = (days_before <= RECENT_DAYS)[order]
    recent_per_group = np.add.reduceat(recent.astype(np.float64), starts)
    has_old = np.logical_or.reduceat(~recent, starts)
    new = np.bincount(owner, weights=np.where(has_old, 0.0, recent_per_group), minlength=n)
    return new / np.maximum(np.bincount(owner, weights=recent_per_group, minlength=n), 1.0)


def top_share(groups: tuple[np.ndarray, np.ndarray, np.ndarray], offsets: np.ndarray) -> np.ndarray:
    """Share of each customer's transactions in its most used key; 0 for a customer without any."""
    order, starts, owner = groups
    counts = np.diff(offsets)
    top = np.zeros(len(counts))
    if len(order):
        per_group = np.diff(np.r_[starts, len(order)])
        first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        top[owner[first]] = np.maximum.reduceat(per_group, first)
    return top / np.maximum(counts, 1)


class ModelDerived(FeatureGroupModel):
    """27 per-customer dynamics columns (see the module docstring)."""

    name = "model_derived"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        if len(TRACKED) * len(PER_SERIES) + len(EXTRA) != dim:
            raise ValueError(f"{self.name} produces {len(TRACKED) * len(PER_SERIES) + len(EXTRA)} columns, "
                             f"configured {dim}")
        self.spend_scale = np.ones(1)

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        """The median monthly spend (present months with spend) of a seeded training sample."""
        rng = np.random.default_rng([self.seed, 3])
        limit = int(self.settings.phase0.fit_sample_customers)
        spends = []
        for x in train:
            rows = np.sort(rng.choice(x.n, limit, replace=False)) if x.n > limit else np.arange(x.n)
            spend = x.series[rows, :, x.series_index("spend")]
            spends.append(spend[x.present[rows] & (spend > 0)])
        spends = np.concatenate(spends)
        self.spend_scale = np.array([float(np.median(spends)) if len(spends) else 1.0])

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        out = np.empty((x.n, self.dim), np.float32)
        for start in range(0, x.n, CHUNK):
            stop = min(start + CHUNK, x.n)
            out[start:stop] = self._chunk(x, start, stop)
        return out

    def _chunk(self, x: MonthInputs, start: int, stop: int) -> np.ndarray:
        present = x.present[start:stop]
        columns = [series_dynamics(x.series[start:stop, :, x.series_index(s)].astype(np.float64), present)
                   for s in TRACKED]
        spend = np.where(present, x.series[start:stop, :, x.series_index("spend")].astype(np.float64), 0.0)
        count = np.maximum(present.sum(1), 1)
        mean = spend.sum(1) / count
        std = np.sqrt((np.where(present, spend - mean[:, None], 0.0) ** 2).sum(1) / count)
        top = spend.max(1)
        ok = present[:, -1] & present[:, -2] & present[:, -3]
        acceleration = _relative(np.where(ok, spend[:, -1] - 2 * spend[:, -2] + spend[:, -3], 0.0), mean)

        lo, hi = x.txn_offsets[start], x.txn_offsets[stop]
        offsets = x.txn_offsets[start:stop + 1] - lo
        days = x.txn_days_before[lo:hi]
        mcc = key_groups(x.txn_mcc[lo:hi], offsets)
        n = stop - start
        extra = [exploration(days, mcc, n), exploration(days, key_groups(x.txn_merchant[lo:hi], offsets), n),
                 top_share(mcc, offsets), np.log1p((mean + std) / self.spend_scale[0]),
                 _relative(top - mean, top), acceleration]
        return np.concatenate([*columns, np.stack(extra, axis=1)], axis=1)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"spend_scale": self.spend_scale}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.spend_scale = state["spend_scale"]

    def column_names(self) -> list[str]:
        return [f"{s}_{f}" for s in TRACKED for f in PER_SERIES] + list(EXTRA)
