"""Persistent homology of each customer's own data (the reference broadcast one population diagram).

- ``tda_global``: the customer's 12-month trajectory, delay-embedded into a small point cloud.
- ``tda_local``: the customer's last-90-day transactions as a point cloud.

Both compute Vietoris–Rips persistence (H0, H1) of every customer's cloud with gudhi's Ripser
engine, the C++ backend of ``gudhi.sklearn.RipsPersistence`` (which needs scikit-learn, not a
dependency here); called directly on precomputed distance matrices it costs ~5 µs for a 10-point
cloud and ~175 µs for 48 points, where building a ``RipsComplex`` and a ``SimplexTree`` per
customer costs ~30 µs and ~3 ms. The tests check it against gudhi's public ``RipsComplex`` path.
Clouds are built and measured chunk by chunk (bounded memory) and chunks run on a thread pool
(gudhi releases the GIL during Rips persistence); fixed chunk boundaries keep the output
independent of the number of threads.

Conventions: filtration values are Euclidean edge lengths (gudhi's convention); Z/2 coefficients;
bars of zero persistence are not features (gudhi's default); the one essential (infinite) H0 bar
of a non-empty cloud is **dropped** - it is present in every cloud and says nothing. H1 of a full
Rips filtration has no essential bars, so every remaining bar is finite.
"""

from __future__ import annotations

import os
from abc import abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import duckdb
import numpy as np
from gudhi._ripser_ext import _full as ripser_full  # pinned gudhi==3.13.0 (constraints.txt)

from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import MonthInputs

CHUNK = 1024                 # customers per work unit
BLOCK = 64                   # customers per distance-matrix batch within a chunk
TOP_PAIRS = 16               # pairs per homology dimension kept by ``diagrams``
H0_STATS = ("count", "mean_life", "max_life", "std_life", "entropy", "total", "min_life", "median_life")
H1_STATS = ("count", "mean_life", "max_life", "std_life", "entropy", "total", "mean_birth", "mean_death")

CloudFn = Callable[[int, int], tuple[np.ndarray, np.ndarray]]


@dataclass
class Bars:
    """Finite bars of one homology dimension for many customers, grouped by ``owner`` (ascending)."""

    owner: np.ndarray   # int64
    birth: np.ndarray   # float64
    death: np.ndarray   # float64

    @property
    def life(self) -> np.ndarray:
        return self.death - self.birth


def distance_matrices(clouds: np.ndarray) -> np.ndarray:
    """Exact Euclidean distances [m, P, P] of padded clouds [m, P, d], one coordinate at a time.

    The Gram-matrix shortcut would turn duplicate points into ~1e-8 distances, i.e. spurious bars.
    """
    sq = np.zeros(clouds.shape[:2] + clouds.shape[1:2])
    for c in range(clouds.shape[2]):
        col = clouds[:, :, c].astype(np.float64)
        sq += (col[:, :, None] - col[:, None, :]) ** 2
    return np.sqrt(sq)


def _chunk_bars(lo: int, hi: int, cloud_fn: CloudFn) -> tuple[Bars, Bars]:
    """Bars of customers lo..hi-1. Customers are visited by cloud size in blocks of ``BLOCK`` so
    each block's distance matrices are padded only to its own largest cloud."""
    clouds, sizes = cloud_fn(lo, hi)
    owners = np.flatnonzero(sizes >= 2)
    owners = owners[np.argsort(sizes[owners], kind="stable")]
    h0, h1, n1 = [], [], np.zeros(len(owners), np.int64)
    for start in range(0, len(owners), BLOCK):
        block = owners[start:start + BLOCK]
        dist = distance_matrices(clouds[block, :sizes[block[-1]]])
        for i, b in enumerate(block):
            k = sizes[b]
            dgm = ripser_full(np.ascontiguousarray(dist[i, :k, :k]), max_dimension=1, homology_coeff_field=2)
            h0.append(dgm[0])
            if len(dgm) > 1:
                h1.append(dgm[1])
                n1[start + i] = len(dgm[1])
    n0 = np.array([len(d) for d in h0], np.int64)
    return _bars(lo + owners, n0, h0), _bars(lo + owners, n1, h1)


def _bars(owners: np.ndarray, counts: np.ndarray, parts: list[np.ndarray]) -> Bars:
    """Flat finite bars from per-customer diagrams, grouped by ascending owner (the essential H0
    bar is dropped here)."""
    pairs = np.concatenate(parts).astype(np.float64) if parts else np.zeros((0, 2))
    owner = np.repeat(owners, counts)
    keep = np.isfinite(pairs[:, 1])
    order = np.argsort(owner[keep], kind="stable")
    return Bars(owner[keep][order].astype(np.int64), pairs[keep, 0][order], pairs[keep, 1][order])


def _concat(parts: list[Bars]) -> Bars:
    if not parts:
        return Bars(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
    return Bars(*(np.concatenate([getattr(b, f) for b in parts]) for f in ("owner", "birth", "death")))


def rips_bars(n: int, cloud_fn: CloudFn, workers: int | None = None) -> tuple[Bars, Bars]:
    """Finite H0 and H1 bars of the Rips filtration of every customer's cloud.

    ``cloud_fn(lo, hi)`` returns the padded clouds [hi-lo, P, d] of customers lo..hi-1 and their
    sizes (the first ``size`` points of a row are real). Clouds with < 2 points have no finite bar.
    """
    workers = workers or len(os.sched_getaffinity(0))
    starts = range(0, n, CHUNK)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda lo: _chunk_bars(lo, min(lo + CHUNK, n), cloud_fn), starts))
    return _concat([h0 for h0, _ in results]), _concat([h1 for _, h1 in results])


def _group_starts(owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Customers that own bars and where their (contiguous) bars start."""
    counts = np.bincount(owner, minlength=n)
    has = counts > 0
    return has, np.concatenate([[0], np.cumsum(counts)[:-1]])[has]


def bar_stats(bars: Bars, n: int, dim: int) -> np.ndarray:
    """Eight statistics of each customer's bars [n, 8] (zeros where a customer has none).

    H1: count, mean/max/std lifetime, persistence entropy, total persistence, mean birth, mean death.
    H0 bars of a Rips filtration are all born at 0, so mean birth would be constant and mean death
    would repeat mean lifetime; for H0 those two slots hold the min and median lifetime instead.
    """
    life, owner = bars.life, bars.owner
    count = np.bincount(owner, minlength=n).astype(np.float64)
    total = np.bincount(owner, life, minlength=n)
    safe = np.maximum(count, 1)
    mean = total / safe
    std = np.sqrt(np.bincount(owner, (life - mean[owner]) ** 2, minlength=n) / safe)
    p = life / total[owner]
    entropy = -np.bincount(owner, p * np.log(np.where(p > 0, p, 1.0)), minlength=n)
    largest = np.zeros(n)
    has, starts = _group_starts(owner, n)
    if has.any():
        largest[has] = np.maximum.reduceat(life, starts)
    if dim == 0:
        ordered = life[np.lexsort((life, owner))]
        smallest, median = np.zeros(n), np.zeros(n)
        c = count[has].astype(np.int64)
        smallest[has] = ordered[starts]
        median[has] = (ordered[starts + (c - 1) // 2] + ordered[starts + c // 2]) / 2
        extra = [smallest, median]
    else:
        extra = [np.bincount(owner, bars.birth, minlength=n) / safe, np.bincount(owner, bars.death, minlength=n) / safe]
    return np.stack([count, mean, largest, std, entropy, total, *extra], axis=1)


def top_pairs(bars: Bars, n: int, k: int) -> np.ndarray:
    """The ``k`` most persistent (birth, death) pairs per customer [n, k, 2], zero padded."""
    order = np.lexsort((-bars.life, bars.owner))
    owner = bars.owner[order]
    first = np.searchsorted(owner, owner)
    rank = np.arange(len(owner)) - first
    keep = rank < k
    out = np.zeros((n, k, 2), np.float32)
    out[owner[keep], rank[keep], 0] = bars.birth[order][keep]
    out[owner[keep], rank[keep], 1] = bars.death[order][keep]
    return out


class _TdaGroup(FeatureGroupModel):
    @abstractmethod
    def _clouds(self, x: MonthInputs) -> CloudFn:
        """The chunked cloud builder of month ``x`` (see ``rips_bars``)."""

    def bars(self, x: MonthInputs) -> tuple[Bars, Bars]:
        return rips_bars(x.n, self._clouds(x))

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        h0, h1 = self.bars(x)
        return np.concatenate([bar_stats(h0, x.n, 0), bar_stats(h1, x.n, 1)], axis=1).astype(np.float32)

    def diagrams(self, x: MonthInputs) -> np.ndarray:
        """[n, 2, TOP_PAIRS, 2] float32: the most persistent (birth, death) pairs of H0 and H1 (PersLay's input)."""
        h0, h1 = self.bars(x)
        return np.stack([top_pairs(h0, x.n, TOP_PAIRS), top_pairs(h1, x.n, TOP_PAIRS)], axis=1)

    def column_names(self) -> list[str]:
        return [f"{self.name}_h0_{s}" for s in H0_STATS] + [f"{self.name}_h1_{s}" for s in H1_STATS]


class TdaGlobal(_TdaGroup):
    """Rips persistence of the customer's own 12-month trajectory.

    Five monthly series (log1p spend, log1p transaction count, log1p distinct MCCs, number of
    products, online share), standardised with training-month statistics, are delay-embedded with
    window 3 over the months the customer was present: point k = (v[k], v[k+1], v[k+2]) in R^15,
    so up to 10 points. H0 measures how far apart the customer's quarters are (volatility at every
    scale), H1 loops in the trajectory (behaviour that leaves and comes back). Customers present
    fewer than 4 months have at most one point: all zeros, and that itself is a signal.
    """

    name = "tda_global"
    SERIES = ("spend", "txn_count", "distinct_mcc", "num_products", "online_share")
    LOG = ("spend", "txn_count", "distinct_mcc")
    WINDOW = 3

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.mean = np.zeros(len(self.SERIES))
        self.std = np.ones(len(self.SERIES))

    def _values(self, x: MonthInputs, rows: slice) -> np.ndarray:
        """The five series [rows, L, 5], log1p where the series is a heavy-tailed count or amount."""
        cols = []
        for s in self.SERIES:
            col = x.series[rows, :, x.series_index(s)].astype(np.float64)
            cols.append(np.log1p(np.maximum(col, 0)) if s in self.LOG else col)
        return np.stack(cols, axis=-1)

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        values = np.concatenate([self._values(x, slice(None))[x.present] for x in train])
        self.mean = values.mean(axis=0)
        self.std = np.maximum(values.std(axis=0), 1e-6)

    def _clouds(self, x: MonthInputs) -> CloudFn:
        def build(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
            present = x.present[lo:hi]
            v = (self._values(x, slice(lo, hi)) - self.mean) / self.std
            # present months first, in calendar order
            v = np.take_along_axis(v, np.argsort(~present, axis=1, kind="stable")[..., None], axis=1)
            m = v.shape[1] - self.WINDOW + 1
            clouds = np.concatenate([v[:, i:i + m] for i in range(self.WINDOW)], axis=-1)
            return clouds, np.maximum(present.sum(axis=1) - self.WINDOW + 1, 0)
        return build

    def state_dict(self):
        return {"mean": self.mean, "std": self.std}

    def load_state_dict(self, state):
        self.mean, self.std = state["mean"], state["std"]


class TdaLocal(_TdaGroup):
    """Rips persistence of the customer's last-90-day transactions (the 32 most recent at most).

    Each transaction is a point in R^6, every coordinate spanning about one unit: days before the
    end of t / 90, log1p(amount) standardised on training transactions and halved, the hour on a
    circle of radius 1/2, the L1 merchant category on a circle of radius 1/2 (unknown: centre). H0
    describes how clustered the spending is (bursts, repeated purchases), H1 cycles such as a
    routine that returns to the same kind of purchase. ``diagrams`` exposes the pairs themselves.
    """

    name = "tda_local"
    DAYS = 90.0
    MAX_POINTS = 32

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.amount_mean, self.amount_std = 0.0, 1.0

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        amounts = np.concatenate([np.log1p(np.maximum(x.txn_amount[x.txn_days_before <= self.DAYS], 0))
                                  for x in train]).astype(np.float64)
        if len(amounts):
            self.amount_mean, self.amount_std = float(amounts.mean()), float(max(amounts.std(), 1e-6))

    def _points(self, x: MonthInputs, rows: np.ndarray) -> np.ndarray:
        hour = x.txn_hour[rows].astype(np.float64) * (2 * np.pi / 24)
        l1 = x.txn_l1[rows].astype(np.float64)
        angle = l1 * (2 * np.pi / len(self.settings.mcc.l1_names))
        radius = np.where(l1 >= 0, 0.5, 0.0)
        amount = (np.log1p(np.maximum(x.txn_amount[rows], 0)) - self.amount_mean) / (2 * self.amount_std)
        return np.stack([x.txn_days_before[rows] / self.DAYS, amount, 0.5 * np.cos(hour), 0.5 * np.sin(hour),
                         radius * np.cos(angle), radius * np.sin(angle)], axis=-1)

    def _clouds(self, x: MonthInputs) -> CloudFn:
        def build(lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
            first, last = x.txn_offsets[lo], x.txn_offsets[hi]
            owner = np.repeat(np.arange(hi - lo), np.diff(x.txn_offsets[lo:hi + 1]))
            recent = np.bincount(owner[x.txn_days_before[first:last] <= self.DAYS], minlength=hi - lo)
            sizes = np.minimum(recent, self.MAX_POINTS)
            # rows are oldest first per customer, so the most recent ones are the tail
            slot = np.arange(self.MAX_POINTS)
            rows = x.txn_offsets[lo + 1:hi + 1, None] - sizes[:, None] + slot
            real = slot < sizes[:, None]
            clouds = np.zeros((hi - lo, self.MAX_POINTS, 6))
            clouds[real] = self._points(x, rows[real])
            return clouds, sizes
        return build

    def state_dict(self):
        return {"amount_mean": np.array(self.amount_mean), "amount_std": np.array(self.amount_std)}

    def load_state_dict(self, state):
        self.amount_mean, self.amount_std = float(state["amount_mean"]), float(state["amount_std"])
