"""Hyperbolic features of the two trees a bank customer lives in: products and merchant categories.

Trees embed in hyperbolic space with low distortion (the volume of a ball grows exponentially, like
the number of nodes of a tree), so a customer summarised as a point of the Poincaré ball says both
*where* in the tree they are (direction) and *how specific* they are (distance from the origin).
A customer is the weighted Einstein midpoint of the tree nodes they use: the hyperbolic barycentre,
computed in the Klein model where it is a Lorentz-factor-weighted mean, then mapped back.
"""

from __future__ import annotations

import duckdb
import numpy as np

from finai_models.config import MccHierarchy, Settings
from finai_models.phase0.groups.base import FeatureGroupModel, per_customer
from finai_models.phase0.inputs import MonthInputs

EPS = 1e-5                   # points stay at norm <= 1 - EPS


# --- Poincaré-ball geometry (curvature -1) -------------------------------------------------------
def to_klein(p: np.ndarray) -> np.ndarray:
    return 2 * p / (1 + (p * p).sum(-1, keepdims=True))


def to_poincare(k: np.ndarray) -> np.ndarray:
    return k / (1 + np.sqrt(np.maximum(1 - (k * k).sum(-1, keepdims=True), 0)))


def lorentz_factor(k: np.ndarray) -> np.ndarray:
    return 1 / np.sqrt(np.maximum(1 - (k * k).sum(-1), 1e-12))


def poincare_distance(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    uu, vv, duv = (u * u).sum(-1), (v * v).sum(-1), ((u - v) ** 2).sum(-1)
    return np.arccosh(1 + 2 * duv / ((1 - uu) * (1 - vv)))


def depth(p: np.ndarray) -> np.ndarray:
    """Hyperbolic distance from the origin of points with Euclidean norm ``p``."""
    return 2 * np.arctanh(np.minimum(p, 1 - EPS))


def einstein_midpoint(weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Weighted Einstein midpoints [n, d] of ``points`` [m, d] (Poincaré) under ``weights`` [n, m].

    Rows with zero total weight map to the origin.
    """
    k = to_klein(points)
    w = weights * lorentz_factor(k)
    total = w.sum(-1, keepdims=True)
    return to_poincare(w @ k / np.where(total > 0, total, 1))


# --- product tree -------------------------------------------------------------------------------
def product_tree(settings: Settings) -> tuple[list[str], np.ndarray]:
    """Nodes (root, the nba groups in config order, the products in config order) and parents.

    A product in no group hangs from the root; one listed in several groups from the first.
    """
    groups = list(settings.nba_groups)
    names = ["root", *(f"group:{g}" for g in groups), *settings.products]
    parent = np.zeros(len(names), np.int64)
    parent[0] = -1
    for k, product in enumerate(settings.products):
        owner = [i for i, g in enumerate(groups) if product in settings.nba_groups[g]]
        parent[1 + len(groups) + k] = 1 + owner[0] if owner else 0
    return names, parent


def ancestor_pairs(parent: np.ndarray) -> np.ndarray:
    """All (ancestor, descendant) pairs of the tree, i.e. its transitive closure [p, 2]."""
    pairs = []
    for node in range(len(parent)):
        up = parent[node]
        while up >= 0:
            pairs.append((up, node))
            up = parent[up]
    return np.array(pairs, np.int64)


def fit_poincare(parent: np.ndarray, dim: int, seed: int, epochs: int = 500, lr: float = 1.0,
                 burn_in: int = 50) -> np.ndarray:
    """Poincaré embeddings of a tree (Nickel & Kiela 2017), full batch, deterministic, float64.

    Every ancestor-descendant pair (u, v), in both directions, is scored by a softmax of -d(u, .)
    over v and all nodes unrelated to u (mean loss over pairs). Riemannian SGD scales the Euclidean
    gradient by the inverse metric (1 - |x|^2)^2 / 4 and projects back inside the ball; a burn-in at
    lr/10 lets the tree settle near the origin first. The loss keeps falling as every node drifts
    to the boundary, so the number of epochs sets the scale: 500 reconstructs the tree exactly
    (mean average precision 1.0 on the closure, products deeper than their group) with groups at
    hyperbolic depth ~3-4.5 and products at ~4.3-6 for the 24-product catalogue.
    """
    n = len(parent)
    pairs = ancestor_pairs(parent)
    related = np.eye(n, dtype=bool)
    related[pairs[:, 0], pairs[:, 1]] = related[pairs[:, 1], pairs[:, 0]] = True
    u = np.concatenate([pairs[:, 0], pairs[:, 1]])
    v = np.concatenate([pairs[:, 1], pairs[:, 0]])
    allowed = ~related[u]
    allowed[np.arange(len(u)), v] = True
    target = np.zeros((len(u), n))
    target[np.arange(len(u)), v] = 1
    off = ~np.eye(n, dtype=bool)
    x = np.random.default_rng(seed).uniform(-1e-3, 1e-3, (n, dim))
    for epoch in range(epochs):
        sq = (x * x).sum(-1)
        alpha = 1 - sq
        dot = x @ x.T
        gamma = 1 + 2 * np.maximum(sq[:, None] + sq[None] - 2 * dot, 0) / (alpha[:, None] * alpha[None])
        logits = np.where(allowed, -np.arccosh(gamma)[u], -np.inf)
        prob = np.exp(logits - logits.max(1, keepdims=True))
        prob /= prob.sum(1, keepdims=True)
        # dLoss/dd(a, w), symmetrised: the loss depends on d through d(u, .) rows
        coef = np.zeros((n, n))
        np.add.at(coef, u, (target - prob) / len(u))
        coef = coef + coef.T
        # dd(a, w)/dx_a = 4 / (alpha_w sqrt(gamma^2 - 1)) ((|x_w|^2 - 2<x_a, x_w> + 1) x_a / alpha_a^2 - x_w / alpha_a)
        coef = np.where(off, coef * 4 / (alpha[None] * np.sqrt(np.maximum(gamma ** 2 - 1, 1e-30))), 0)
        inner = (coef * (sq[None] - 2 * dot + 1)).sum(1, keepdims=True)
        grad = x * inner / alpha[:, None] ** 2 - coef @ x / alpha[:, None]
        x = x - (lr / 10 if epoch < burn_in else lr) * (alpha ** 2 / 4)[:, None] * grad
        norm = np.linalg.norm(x, axis=-1, keepdims=True)
        x = np.where(norm > 1 - EPS, x / norm * (1 - EPS), x)
    return x


class ProductHierarchy(FeatureGroupModel):
    """The customer's holdings at t as one point of the Poincaré ball of the product tree.

    The tree (root -> nba groups -> products) comes from products.yaml and is embedded in 32
    dimensions in ``fit``. Features: the Einstein midpoint of the held products (the origin when
    none), its Euclidean norm and its depth (hyperbolic distance from the origin): a customer
    holding products of one group sits near that group's branch, deep; a customer spread across
    groups sits near the origin.
    """

    name = "product_hierarchy"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.embed_dim = dim - 2
        self.nodes, self.parent = product_tree(settings)
        self.embedding = np.zeros((len(self.nodes), self.embed_dim))

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        self.embedding = fit_poincare(self.parent, self.embed_dim, self.seed)

    def product_points(self) -> np.ndarray:
        return self.embedding[len(self.nodes) - len(self.settings.products):]

    def embed_holdings(self, held: np.ndarray) -> np.ndarray:
        """[n, dim] features of boolean holdings [n, products]."""
        mid = einstein_midpoint(held.astype(np.float64), self.product_points())
        norm = np.linalg.norm(mid, axis=-1)
        return np.concatenate([mid, norm[:, None], depth(norm)[:, None]], axis=1).astype(np.float32)

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        return self.embed_holdings(x.holdings[:, -1])

    def state_dict(self):
        return {"embedding": self.embedding, "nodes": np.array(self.nodes)}

    def load_state_dict(self, state):
        if list(state["nodes"]) != self.nodes:
            raise ValueError(f"{self.name}: saved product tree differs from products.yaml; refit the group")
        self.embedding = state["embedding"]

    def column_names(self):
        return [f"{self.name}_{i:02d}" for i in range(self.embed_dim)] + [f"{self.name}_norm", f"{self.name}_depth"]


# --- merchant-category tree ---------------------------------------------------------------------
def mcc_disk(mcc: MccHierarchy, l1_radius: float = 0.7, l2_radius: float = 0.9) -> tuple[np.ndarray, np.ndarray]:
    """Fixed Poincaré-disk positions of the L1 [n1, 2] and L2 [n2, 2] categories.

    L1 categories sit evenly spaced at ``l1_radius``; the children of an L1 share its angular
    sector (2 pi / n1) evenly, centred on the parent's angle, at ``l2_radius``, so siblings are
    distinct points and every L2 is nearer its own parent than any other L1.
    """
    n1 = len(mcc.l1_names)
    sector = 2 * np.pi / n1
    l1_angle = np.arange(n1) * sector
    l2_to_l1 = np.asarray(mcc.l2_to_l1)
    l2_angle = np.zeros(len(l2_to_l1))
    for parent in range(n1):
        children = np.flatnonzero(l2_to_l1 == parent)
        offsets = (np.arange(len(children)) - (len(children) - 1) / 2) * sector / max(len(children), 1)
        l2_angle[children] = l1_angle[parent] + offsets
    return _on_circle(l1_angle, l1_radius), _on_circle(l2_angle, l2_radius)


def _on_circle(angle: np.ndarray, radius: float) -> np.ndarray:
    return radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)


def _grouped_midpoint(points: np.ndarray, index: np.ndarray, group: np.ndarray, weight: np.ndarray,
                      groups: int) -> np.ndarray:
    """Weighted Einstein midpoint per group [groups, 2] of transactions at ``points[index]``."""
    k = to_klein(points)
    wg = weight * lorentz_factor(k)[index]
    total = np.bincount(group, wg, minlength=groups)
    num = np.stack([np.bincount(group, wg * k[index, c], minlength=groups) for c in range(k.shape[1])], axis=1)
    return to_poincare(num / np.where(total > 0, total, 1)[:, None])


def _polar(p: np.ndarray) -> np.ndarray:
    """(x, y, radius, angle / pi) [n, 4] of disk points [n, 2]."""
    return np.column_stack([p, np.linalg.norm(p, axis=1), np.arctan2(p[:, 1], p[:, 0]) / np.pi])


def _sorted_within_owner(owner: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Non-negative int ``values`` sorted within each owner (owners ascending), as one int64 sort
    of owner << bits | value - ~20x faster than ``np.lexsort``. Values too wide to share 63 bits
    with the owner are replaced by their dense rank first."""
    bits = int(values.max()).bit_length() if len(values) else 0
    if bits + int(owner.max() if len(owner) else 0).bit_length() > 63:
        values = np.unique(values, return_inverse=True)[1]
        bits = int(values.max()).bit_length()
    return np.sort((owner.astype(np.int64) << bits) | values.astype(np.int64)) & ((1 << bits) - 1)


def _merchant_stats(x: MonthInputs, owner: np.ndarray, horizon: float) -> np.ndarray:
    """log1p(distinct merchants)/log1p(500), revisit ratio, recency, Gini of amounts [n, 4]."""
    n = x.n
    count = np.diff(x.txn_offsets)
    merchant = _sorted_within_owner(owner, x.txn_merchant - (x.txn_merchant.min() if len(owner) else 0))
    new = np.ones(len(owner), bool)
    new[1:] = (owner[1:] != owner[:-1]) | (merchant[1:] != merchant[:-1])
    distinct = np.bincount(owner[new], minlength=n)
    revisit = (count - distinct) / np.maximum(count, 1)
    last = per_customer(x.txn_days_before, x.txn_offsets, np.minimum, horizon)
    recency = 1 - np.minimum(last, horizon) / horizon
    # non-negative float32 values sort like their bit patterns
    bits = np.maximum(x.txn_amount, 0).astype(np.float32).view(np.int32)
    amount = _sorted_within_owner(owner, bits).astype(np.int32).view(np.float32).astype(np.float64)
    rank = np.arange(len(owner)) - x.txn_offsets[owner] + 1
    total = np.bincount(owner, amount, minlength=n)
    gini_num = np.bincount(owner, (2 * rank - count[owner] - 1) * amount, minlength=n)
    gini = np.where(total > 0, gini_num / np.maximum(count * total, 1e-12), 0)
    return np.column_stack([np.log1p(distinct) / np.log1p(500), revisit, recency, gini])


class MerchantHierarchy(FeatureGroupModel):
    """Where the customer's recent card spend sits in the MCC tree, on a fixed Poincaré disk.

    Transactions of the last 180 days weigh w = amount * exp(-days_before / 90). Columns:
    L1 Einstein midpoint (x, y, radius, angle/pi) [4]; L2 midpoint [4]; the weighted, normalised
    L2 histogram projected on 8 components fitted on the training months ("brand SVD") [8];
    merchant stats: log1p(distinct merchants)/log1p(500), revisit ratio (share of transactions at a
    merchant already seen), recency 1 - min(days_before)/180, Gini of amounts [4]; depth: hyperbolic
    distance from the origin of the L1 and L2 midpoints, coherence (cos of the angle between them
    + 1)/2 [3]; spread: for each quarter of the L1 disk, its share of w times the radius of its
    own midpoint [4]. A customer without transactions is all zeros.
    """

    name = "merchant_hierarchy"
    DECAY_DAYS = 90.0
    SVD_DIM = 8
    QUARTERS = 4

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.l1_points, self.l2_points = mcc_disk(settings.mcc)
        self.components = np.zeros((self.SVD_DIM, len(settings.mcc.l2_names)))

    def _weights(self, x: MonthInputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        owner = np.repeat(np.arange(x.n), np.diff(x.txn_offsets))
        w = np.maximum(x.txn_amount.astype(np.float64), 0) * np.exp(-x.txn_days_before / self.DECAY_DAYS)
        return owner, w, (x.txn_l2 >= 0) & (x.txn_l1 >= 0)

    def l2_histogram(self, x: MonthInputs) -> np.ndarray:
        """Weighted L2 shares [n, n2] (rows sum to 1, or 0 without categorised spend)."""
        owner, w, known = self._weights(x)
        n2 = len(self.settings.mcc.l2_names)
        hist = np.bincount(owner[known] * n2 + x.txn_l2[known], w[known], minlength=x.n * n2).reshape(x.n, n2)
        total = hist.sum(axis=1, keepdims=True)
        return hist / np.where(total > 0, total, 1)

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        """Top right singular vectors of the stacked training histograms (uncentred, like TruncatedSVD)."""
        gram = sum(h.T @ h for h in map(self.l2_histogram, train))
        values, vectors = np.linalg.eigh(gram)
        top = vectors[:, np.argsort(values)[::-1][:self.SVD_DIM]].T
        signs = np.sign(top[np.arange(len(top)), np.abs(top).argmax(axis=1)])
        self.components = top * signs[:, None]

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        owner, w, known = self._weights(x)
        o, wk = owner[known], w[known]
        l1, l2 = x.txn_l1[known].astype(np.int64), x.txn_l2[known].astype(np.int64)
        mid1 = _grouped_midpoint(self.l1_points, l1, o, wk, x.n)
        mid2 = _grouped_midpoint(self.l2_points, l2, o, wk, x.n)
        r1, r2 = np.linalg.norm(mid1, axis=1), np.linalg.norm(mid2, axis=1)
        cos = (mid1 * mid2).sum(axis=1) / np.maximum(r1 * r2, 1e-12)
        coherence = np.where((r1 > 0) & (r2 > 0), (cos + 1) / 2, 0)
        quarter = l1 * self.QUARTERS // len(self.settings.mcc.l1_names)
        cell = o * self.QUARTERS + quarter
        radius_q = np.linalg.norm(_grouped_midpoint(self.l1_points, l1, cell, wk, x.n * self.QUARTERS), axis=1)
        total = np.bincount(o, wk, minlength=x.n)
        share = np.bincount(cell, wk, minlength=x.n * self.QUARTERS).reshape(x.n, -1) / np.where(
            total > 0, total, 1)[:, None]
        columns = [_polar(mid1), _polar(mid2), self.l2_histogram(x) @ self.components.T,
                   _merchant_stats(x, owner, float(self.settings.phase0.txn_days)),
                   np.column_stack([depth(r1), depth(r2), coherence]), share * radius_q.reshape(x.n, -1)]
        return np.concatenate(columns, axis=1).astype(np.float32)

    def state_dict(self):
        return {"components": self.components}

    def load_state_dict(self, state):
        self.components = state["components"]

    def column_names(self):
        names = ["l1_x", "l1_y", "l1_radius", "l1_angle", "l2_x", "l2_y", "l2_radius", "l2_angle",
                 *(f"brand_svd_{i}" for i in range(self.SVD_DIM)), "distinct_merchants", "revisit_ratio", "recency",
                 "amount_gini", "l1_depth", "l2_depth", "coherence", *(f"spread_q{q}" for q in range(self.QUARTERS))]
        return [f"{self.name}_{n}" for n in names]
