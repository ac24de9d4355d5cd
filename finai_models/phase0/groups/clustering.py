"""Soft customer segments: a Gaussian mixture over each customer's standardized state at t.

The mixture uses full covariances because its inputs are strongly correlated (3- vs 12-month
spend, transaction count vs distinct MCCs): a diagonal model would spend several components
tracing one correlated direction instead of separating customer types, and with eleven
inputs full covariances cost little. A ridge on every covariance keeps components that sit on
a discrete value (is_active, num_products) from collapsing onto it.

The reference system's mixture left clusters that no customer was assigned to. Here a
component that wins fewer than a handful of training customers is re-seeded by splitting the
heaviest component along its main axis, so every cluster id is in use when fitting ends.
Components are numbered by their mean 12-month spend, so ids are comparable across refits.
No label is ever read.
"""

from __future__ import annotations

import duckdb
import numpy as np

from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import MonthInputs

INPUTS = ("log_spend_3m", "log_spend_12m", "log_txn_count_3m", "log_distinct_mcc_3m", "log_avg_amount_3m",
          "online_share_3m", "num_products", "is_active", "log_income", "log_tenure", "age")
SPEND_12M = INPUTS.index("log_spend_12m")
REG_COVAR = 1e-2        # ridge on standardized covariances: no component narrower than sd 0.1
N_INIT = 3
SCREEN_ITER = 10
MAX_ITER = 100
TOL = 1e-3              # change of the mean log-likelihood per customer
MIN_SHARE = 1e-3        # a component winning fewer than this share of the sample is re-seeded
CHUNK = 200_000


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator, lloyd_steps: int = 10) -> np.ndarray:
    """k-means++ seeding followed by a few Lloyd steps: ``k`` centres ``[k, D]``, deterministic for ``rng``."""
    centres = [points[rng.integers(len(points))]]
    dist = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = dist.sum()
        pick = rng.choice(len(points), p=dist / total) if total > 0 else rng.integers(len(points))
        centres.append(points[pick])
        dist = np.minimum(dist, ((points - points[pick]) ** 2).sum(1))
    centres = np.array(centres, np.float64)
    for _ in range(lloyd_steps):
        labels = nearest(points, centres)
        for j in range(k):
            members = labels == j
            if members.any():
                centres[j] = points[members].mean(0)
    return centres


def nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the closest centre of every point (squared Euclidean distance)."""
    d = (points ** 2).sum(1)[:, None] - 2 * points @ centres.T + (centres ** 2).sum(1)[None, :]
    return d.argmin(1)


def customer_state(x: MonthInputs, rows: slice | np.ndarray = slice(None)) -> np.ndarray:
    """``[n, len(INPUTS)]`` float64 state at t of customers ``rows``; nan where income or age is unknown."""
    s = x.series[rows].astype(np.float64)
    present = x.present[rows]
    last3, last12 = _last(present, 3), _last(present, 12)

    def total(name, mask):
        return (s[..., x.series_index(name)] * mask).sum(1)

    def share(name, mask):
        return total(name, mask) / np.maximum(mask.sum(1), 1)

    count3 = total("txn_count", last3)
    spend3 = total("spend", last3)
    now = s[:, -1]
    income = np.where(now[:, x.series_index("income_known")] > 0, now[:, x.series_index("log_income")], np.nan)
    columns = [np.log1p(spend3), np.log1p(total("spend", last12)), np.log1p(count3),
               np.log1p(share("distinct_mcc", last3)), np.log1p(spend3 / np.maximum(count3, 1)),
               share("online_share", last3), now[:, x.series_index("num_products")],
               now[:, x.series_index("is_active")], income, np.log1p(x.tenure_months[rows].astype(np.float64)),
               x.age[rows].astype(np.float64)]
    return np.stack(columns, axis=1)


def _last(present: np.ndarray, months: int) -> np.ndarray:
    mask = np.zeros_like(present)
    mask[:, -months:] = present[:, -months:]
    return mask


class GaussianMixture:
    """Full-covariance Gaussian mixture fitted by EM (numpy only)."""

    def __init__(self, weights: np.ndarray, means: np.ndarray, covs: np.ndarray):
        self.weights, self.means, self.covs = weights, means, covs
        self._prec_chol = np.linalg.inv(np.linalg.cholesky(covs)).transpose(0, 2, 1)

    @property
    def k(self) -> int:
        return len(self.weights)

    def log_joint(self, points: np.ndarray) -> np.ndarray:
        """``log w_k + log N(x | mu_k, Sigma_k)`` for every point and component, ``[n, K]`` (one matmul)."""
        n, d = points.shape
        chol = self._prec_chol.transpose(1, 0, 2).reshape(d, self.k * d)       # [D, K*D]
        shift = np.einsum("kd,kde->ke", self.means, self._prec_chol).reshape(-1)
        y = (points @ chol - shift).reshape(n, self.k, d)
        log_det = np.log(np.diagonal(self._prec_chol, axis1=1, axis2=2)).sum(1)
        return np.log(self.weights) + log_det - 0.5 * (np.einsum("nkd,nkd->nk", y, y) + d * np.log(2 * np.pi))

    def posteriors(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Responsibilities ``[n, K]`` and per-point log-likelihood ``[n]``."""
        joint = self.log_joint(points)
        top = joint.max(1, keepdims=True)
        log_lik = top[:, 0] + np.log(np.exp(joint - top).sum(1))
        return np.exp(joint - log_lik[:, None]), log_lik

    @classmethod
    def from_responsibilities(cls, points: np.ndarray, resp: np.ndarray) -> GaussianMixture:
        """The M-step: weights, means and ridged covariances from responsibilities (two matmuls)."""
        n, d = points.shape
        mass = resp.sum(0) + 1e-12
        means = resp.T @ points / mass[:, None]
        second = (resp.T @ (points[:, :, None] * points[:, None, :]).reshape(n, d * d)).reshape(-1, d, d)
        covs = second / mass[:, None, None] - means[:, :, None] * means[:, None, :] + REG_COVAR * np.eye(d)
        return cls(mass / mass.sum(), means, covs)

    def split_into(self, dead: int) -> GaussianMixture:
        """Move component ``dead`` onto one half of the heaviest component (split along its main axis)."""
        weights, means, covs = self.weights.copy(), self.means.copy(), self.covs.copy()
        big = int(np.argmax(np.where(np.arange(self.k) == dead, -1.0, weights)))
        values, vectors = np.linalg.eigh(covs[big])
        step = np.sqrt(values[-1]) * vectors[:, -1]
        means[dead], means[big] = means[big] + step, means[big] - step
        covs[dead] = covs[big]
        weights[dead] = weights[big] = (weights[big] + weights[dead]) / 2
        return GaussianMixture(weights, means, covs)


def fit_gmm(points: np.ndarray, k: int, rng: np.random.Generator) -> tuple[GaussianMixture, float]:
    """EM from the best of ``N_INIT`` k-means++ starts (screened by ``SCREEN_ITER`` EM steps each).

    Screening short runs and finishing only the best costs a third of running every start to
    convergence, and the start ranking rarely changes after the first few steps.
    """
    min_members = max(points.shape[1] + 1, int(np.ceil(MIN_SHARE * len(points))))
    starts = []
    for _ in range(N_INIT):
        labels = nearest(points, kmeans_plus_plus(points, k, rng))
        model = GaussianMixture.from_responsibilities(points, np.eye(k)[labels])
        starts.append(run_em(points, model, SCREEN_ITER, min_members))
    model, _, _ = max(starts, key=lambda run: run[1])
    model, mean_ll, dead = run_em(points, model, MAX_ITER, min_members)
    if dead:
        raise RuntimeError(f"a mixture of {k} components left {dead} of them without customers; lower K")
    order = np.argsort(model.means[:, SPEND_12M], kind="stable")
    return GaussianMixture(model.weights[order], model.means[order], model.covs[order]), mean_ll


def run_em(points: np.ndarray, model: GaussianMixture, steps: int,
           min_members: int) -> tuple[GaussianMixture, float, int]:
    """Up to ``steps`` EM iterations; returns the last evaluated model, its mean log-likelihood and
    how many components still win fewer than ``min_members`` points (re-seeded while steps remain)."""
    previous = -np.inf
    for step in range(steps):
        resp, log_lik = model.posteriors(points)
        dead = np.flatnonzero(np.bincount(resp.argmax(1), minlength=model.k) < min_members)
        mean_ll = float(log_lik.mean())
        if step == steps - 1 or (not len(dead) and mean_ll - previous < TOL):
            break
        previous = mean_ll
        model = GaussianMixture.from_responsibilities(points, resp)
        for j in dead:
            model = model.split_into(int(j))
    return model, mean_ll, len(dead)


class GmmClustering(FeatureGroupModel):
    """Cluster id, K posteriors and posterior entropy (nats) of a K = dim - 2 component mixture."""

    name = "gmm_clustering"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.k = dim - 2
        self.centre = np.zeros(len(INPUTS))
        self.scale = np.ones(len(INPUTS))
        self.model: GaussianMixture | None = None

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        rng = np.random.default_rng([self.seed, 2])
        limit = int(self.settings.phase0.fit_sample_customers) // max(len(train), 1)
        parts = []
        for x in train:
            rows = np.sort(rng.choice(x.n, limit, replace=False)) if x.n > limit else np.arange(x.n)
            parts.append(customer_state(x, rows))
        raw = np.concatenate(parts)
        self.centre = np.nanmean(raw, axis=0)
        self.scale = np.where(np.nanstd(raw, axis=0) > 1e-9, np.nanstd(raw, axis=0), 1.0)
        self.model, _ = fit_gmm(self._standardize(raw), self.k, rng)

    def _standardize(self, raw: np.ndarray) -> np.ndarray:
        """z-scores with the training mean and std; unknown age/income become the training mean (0)."""
        return np.nan_to_num((raw - self.centre) / self.scale, nan=0.0)

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        out = np.empty((x.n, self.dim), np.float32)
        for start in range(0, x.n, CHUNK):
            rows = slice(start, start + CHUNK)
            points = self._standardize(customer_state(x, rows))
            resp, _ = self.model.posteriors(points)
            entropy = -(resp * np.log(np.maximum(resp, 1e-300))).sum(1)
            out[rows] = np.column_stack([resp.argmax(1), resp, entropy])
        return out

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"centre": self.centre, "scale": self.scale, "weights": self.model.weights,
                "means": self.model.means, "covs": self.model.covs}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.centre, self.scale = state["centre"], state["scale"]
        self.model = GaussianMixture(state["weights"], state["means"], state["covs"])
        self.k = len(self.model.weights)

    def column_names(self) -> list[str]:
        return ["gmm_cluster_id", *(f"gmm_cluster_prob_{j:02d}" for j in range(self.k)), "gmm_entropy"]
