"""Hidden-Markov states of each customer's own monthly journey, lifecycle and behaviour.

The reference system fitted its HMMs on one long "sequence" of sampled rows (customers as
time). Here time runs along months: each mode is a Gaussian HMM with diagonal covariances,
fitted by Baum-Welch on the per-customer 12-month sequences of the training months (one
sequence per customer and training month, vectorised over the batch, customers who joined
recently simply start later in the window).

At transform time only months t-11..t exist in ``MonthInputs``, so decoding is
forward-backward smoothing over the customer's own window: a month's decoded state is the
argmax of its smoothed posterior, which at t equals the filtered posterior -- nothing after t
is needed. Per mode: decoded state at t, posterior over the K states at t, dwell (consecutive
months up to t decoded in that state) and the entropy (nats) of that state's transition row,
so K + 3 columns. States are numbered by their mean of the mode's first observation, so ids
are ordinal (e.g. journey state 4 explores the most MCCs).

Fitting is deterministic: observations are standardized with training statistics, states
start from seeded k-means++ centres, EM runs at most ``MAX_ITER`` iterations with a relative
tolerance, and variances are floored so no state collapses onto a discrete value.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np

from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.groups.clustering import kmeans_plus_plus, nearest
from finai_models.phase0.inputs import MonthInputs

MODES = {"journey": 5, "lifecycle": 5, "behaviour": 6}
MAX_ITER = 50
TOL = 1e-5          # relative change of the total log-likelihood
VAR_FLOOR = 0.05    # on standardized observations: no state narrower than sd 0.22
PROB_FLOOR = 1e-10  # keeps every log finite; far below any probability that matters
INIT_POINTS = 20_000
CHUNK = 100_000


def mode_observations(x: MonthInputs, mode: str, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
    """``[n, L, 4]`` float64 observations of ``mode`` per month (meaningless where not present).

    journey: log1p distinct MCCs, log1p distinct L2s, log1p transactions, online share;
    lifecycle: products held, log1p spend, is_active, log1p months since joining;
    behaviour: log1p average amount, night share, online share, log1p-spend change from the
    previous month (0 when that month is absent). Counts and amounts are log-scaled because
    they are heavy-tailed and a Gaussian state would otherwise model only the tail.
    """
    s = x.series[rows].astype(np.float64)

    def col(name):
        return s[..., x.series_index(name)]

    if mode == "journey":
        columns = [np.log1p(col("distinct_mcc")), np.log1p(col("distinct_l2")), np.log1p(col("txn_count")),
                   col("online_share")]
    elif mode == "lifecycle":
        months_back = np.arange(s.shape[1] - 1, -1, -1, dtype=np.float64)
        tenure = np.clip(x.tenure_months[rows].astype(np.float64)[:, None] - months_back, 0, None)
        columns = [col("num_products"), np.log1p(col("spend")), col("is_active"), np.log1p(tenure)]
    else:
        log_spend = np.log1p(col("spend"))
        present = x.present[rows]
        change = np.zeros_like(log_spend)
        change[:, 1:] = np.where(present[:, 1:] & present[:, :-1], np.diff(log_spend, axis=1), 0.0)
        columns = [np.log1p(col("avg_amount")), col("night_share"), col("online_share"), change]
    return np.stack(columns, axis=-1)


def _log_matmul(matrix: np.ndarray, log_v: np.ndarray) -> np.ndarray:
    """``log(matrix @ exp(log_v))`` for state-major messages ``[K, n]``: shift by the max, one matmul."""
    top = log_v.max(0)
    return top + np.log(matrix @ np.exp(log_v - top))


def time_major(obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``obs [n, T, F]``, ``mask [n, T]`` -> contiguous ``[T, F, n]`` and ``[T, n]``, the layout the HMM works in."""
    return np.ascontiguousarray(obs.transpose(1, 2, 0)), np.ascontiguousarray(mask.T)


@dataclass
class GaussianHmm:
    """A K-state HMM with diagonal Gaussian emissions over a batch of masked monthly sequences.

    Sequences are time-major (``obs [T, F, n]``, ``mask [T, n]``, see ``time_major``) and
    messages are ``[T, K, n]``, so every per-month step is a small matmul over contiguous rows.
    """

    start: np.ndarray   # [K]
    trans: np.ndarray   # [K, K], rows sum to 1
    mean: np.ndarray    # [K, F]
    var: np.ndarray     # [K, F]

    @property
    def k(self) -> int:
        return len(self.start)

    def log_emission(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``log N(x_t | state)`` as ``[T, K, n]``; 0 where the month is absent (marginalised out)."""
        prec = 1.0 / self.var
        const = (self.mean ** 2 * prec).sum(1) + np.log(2 * np.pi * self.var).sum(1)
        quad = prec @ obs ** 2 - 2 * (self.mean * prec) @ obs + const[:, None]
        return np.where(mask[:, None, :], -0.5 * quad, 0.0)

    def forward_backward(self, log_b: np.ndarray, mask: np.ndarray):
        """Log-space forward and backward messages ``[T, K, n]``.

        A sequence starts at its first present month (the start distribution applies there);
        absent months after that only propagate the chain. Also returns the per-sequence
        log-likelihood ``[n]`` and ``begun`` ``[T, n]`` (the sequence has started by month t).
        """
        begun = np.logical_or.accumulate(mask, axis=0)
        log_start = np.log(self.start)[:, None]
        log_alpha, log_beta = np.empty_like(log_b), np.zeros_like(log_b)
        log_alpha[0] = log_start + log_b[0]
        for t in range(1, len(log_b)):
            log_alpha[t] = np.where(begun[t - 1], _log_matmul(self.trans.T, log_alpha[t - 1]), log_start) + log_b[t]
        for t in range(len(log_b) - 2, -1, -1):
            log_beta[t] = np.where(begun[t], _log_matmul(self.trans, log_b[t + 1] + log_beta[t + 1]), 0.0)
        top = log_alpha[-1].max(0)
        log_lik = top + np.log(np.exp(log_alpha[-1] - top).sum(0))
        return log_alpha, log_beta, log_lik, begun

    def posteriors(self, obs: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Smoothed state posteriors ``[T, K, n]`` (zero before a sequence starts) and ``begun [T, n]``."""
        log_alpha, log_beta, log_lik, begun = self.forward_backward(self.log_emission(obs, mask), mask)
        return np.exp(log_alpha + log_beta - log_lik) * begun[:, None, :], begun

    def em_step(self, obs: np.ndarray, mask: np.ndarray) -> tuple[GaussianHmm, float]:
        """One Baum-Welch iteration: the re-estimated model and the log-likelihood of ``self``."""
        log_b = self.log_emission(obs, mask)
        log_alpha, log_beta, log_lik, begun = self.forward_backward(log_b, mask)
        gamma = np.exp(log_alpha + log_beta - log_lik) * begun[:, None, :]
        has = mask.any(0)
        first = gamma[mask[:, has].argmax(0), :, np.flatnonzero(has)].sum(0)
        pairs = np.zeros((self.k, self.k))
        for t in range(len(log_b) - 1):
            a_top = log_alpha[t].max(0)
            nxt = log_b[t + 1] + log_beta[t + 1]
            b_top = nxt.max(0)
            weight = np.exp(a_top + b_top - log_lik) * begun[t]
            pairs += (np.exp(log_alpha[t] - a_top) * weight) @ np.exp(nxt - b_top).T
        pairs *= self.trans
        weights = gamma * mask[:, None, :]
        mass = weights.sum((0, 2))
        safe = np.maximum(mass, 1e-300)[:, None]
        used = mass[:, None] > 0
        mean = np.where(used, (weights @ obs.transpose(0, 2, 1)).sum(0) / safe, self.mean)
        var = np.where(used, (weights @ (obs ** 2).transpose(0, 2, 1)).sum(0) / safe - mean ** 2, self.var)
        rows = pairs.sum(1, keepdims=True)
        trans = np.where(rows > 0, pairs / np.maximum(rows, 1e-300), self.trans)
        model = GaussianHmm(_floor(first / first.sum()), _floor(trans), mean, np.maximum(var, VAR_FLOOR))
        return model, float(log_lik.sum())

    def permuted(self, order: np.ndarray) -> GaussianHmm:
        return GaussianHmm(self.start[order], self.trans[np.ix_(order, order)], self.mean[order], self.var[order])


def _floor(probs: np.ndarray) -> np.ndarray:
    """Probabilities (rows) floored at ``PROB_FLOOR`` and renormalised."""
    probs = np.maximum(probs, PROB_FLOOR)
    return probs / probs.sum(-1, keepdims=True)


def initial_hmm(obs: np.ndarray, mask: np.ndarray, k: int, rng: np.random.Generator) -> GaussianHmm:
    """Deterministic start: k-means++ centres of the present months; counts of consecutive labels."""
    points = obs[mask]
    sample = points[rng.choice(len(points), INIT_POINTS, replace=False)] if len(points) > INIT_POINTS else points
    centres = kmeans_plus_plus(sample, k, rng)
    labels = nearest(obs.reshape(-1, obs.shape[-1]), centres).reshape(mask.shape)
    point_labels = labels[mask]
    var = np.stack([points[point_labels == j].var(0) if (point_labels == j).sum() > 1 else points.var(0)
                    for j in range(k)])
    pairs = np.ones((k, k))
    both = mask[:, 1:] & mask[:, :-1]
    np.add.at(pairs, (labels[:, :-1][both], labels[:, 1:][both]), 1.0)
    has = mask.any(1)
    first = np.bincount(labels[has, mask[has].argmax(1)], minlength=k) + 1.0
    return GaussianHmm(first / first.sum(), pairs / pairs.sum(1, keepdims=True), centres,
                       np.maximum(var, VAR_FLOOR))


def fit_hmm(obs: np.ndarray, mask: np.ndarray, k: int, rng: np.random.Generator) -> tuple[GaussianHmm, list[float]]:
    """Baum-Welch from ``initial_hmm`` for at most ``MAX_ITER`` iterations or until the relative
    gain in log-likelihood falls below ``TOL``; deterministic for a given ``rng``.

    Returns the model (states ordered by their mean of the first observation) and the history of
    the total log-likelihood, which EM never lets decrease.
    """
    model = initial_hmm(obs, mask, k, rng)
    obs, mask = time_major(obs, mask)
    history: list[float] = []
    for _ in range(MAX_ITER):
        updated, log_lik = model.em_step(obs, mask)
        history.append(log_lik)
        if len(history) > 1 and history[-1] - history[-2] <= TOL * abs(history[-2]):
            break
        model = updated
    return model.permuted(np.argsort(model.mean[:, 0], kind="stable")), history


class HmmStates(FeatureGroupModel):
    """Journey (5), lifecycle (5) and behaviour (6) HMM states: state, posteriors, dwell, entropy."""

    name = "hmm_states"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        if sum(k + 3 for k in MODES.values()) != dim:
            raise ValueError(f"{self.name} produces {sum(k + 3 for k in MODES.values())} columns, configured {dim}")
        self.models: dict[str, GaussianHmm] = {}
        self.centre: dict[str, np.ndarray] = {}
        self.scale: dict[str, np.ndarray] = {}

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        limit = int(self.settings.phase0.fit_sample_customers) // max(len(train), 1)
        rng = np.random.default_rng([self.seed, 1])
        rows = [np.sort(rng.choice(x.n, limit, replace=False)) if x.n > limit else np.arange(x.n) for x in train]
        mask = np.concatenate([x.present[r] for x, r in zip(train, rows, strict=True)])
        for index, (mode, k) in enumerate(MODES.items()):
            obs = np.concatenate([mode_observations(x, mode, r) for x, r in zip(train, rows, strict=True)])
            self.centre[mode] = obs[mask].mean(0)
            std = obs[mask].std(0)
            self.scale[mode] = np.where(std > 1e-9, std, 1.0)
            self.models[mode], _ = fit_hmm(self._standardize(mode, obs), mask, k,
                                           np.random.default_rng([self.seed, 1, index]))

    def _standardize(self, mode: str, obs: np.ndarray) -> np.ndarray:
        return (obs - self.centre[mode]) / self.scale[mode]

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        out = np.empty((x.n, self.dim), np.float32)
        for start in range(0, x.n, CHUNK):
            rows = slice(start, start + CHUNK)
            mask = x.present[rows]
            parts = []
            for mode, model in self.models.items():
                obs = self._standardize(mode, mode_observations(x, mode, rows))
                gamma, begun = model.posteriors(*time_major(obs, mask))
                path = gamma.argmax(1)                                      # [T, n]
                state = path[-1]
                dwell = np.cumprod(((path == state) & begun)[::-1], axis=0).sum(0)
                row_entropy = -(model.trans * np.log(model.trans)).sum(1)
                parts += [state[:, None], gamma[-1].T, dwell[:, None], row_entropy[state][:, None]]
            out[rows] = np.concatenate(parts, axis=1)
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        state = {}
        for mode, model in self.models.items():
            state.update({f"{mode}_start": model.start, f"{mode}_trans": model.trans, f"{mode}_mean": model.mean,
                          f"{mode}_var": model.var, f"{mode}_centre": self.centre[mode],
                          f"{mode}_scale": self.scale[mode]})
        return state

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        for mode in MODES:
            self.models[mode] = GaussianHmm(state[f"{mode}_start"], state[f"{mode}_trans"], state[f"{mode}_mean"],
                                            state[f"{mode}_var"])
            self.centre[mode], self.scale[mode] = state[f"{mode}_centre"], state[f"{mode}_scale"]

    def column_names(self) -> list[str]:
        names = []
        for mode, k in MODES.items():
            names += [f"hmm_{mode}_state", *(f"hmm_{mode}_prob_{j}" for j in range(k)), f"hmm_{mode}_dwell",
                      f"hmm_{mode}_trans_entropy"]
        return names
