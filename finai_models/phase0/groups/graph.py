"""Collaborative customer embeddings from a LightGCN over the customer-item graph, for every customer.

The original system trained node embeddings on a kNN graph of a 10k sample and gave everyone
else zeros. Here the graph is bipartite: customers on one side; on the other 54 items, the 24
products held at t and the 30 MCC L2 categories with at least 2 card transactions in the last
90 days. Training customers (one node per sampled customer-month) carry **no free embedding**:
their layer-0 vectors are pinned at zero, so a customer is represented only through its items,
exactly as at transform time. LightGCN propagation then gives a customer the embedding

    u = sum_{i in N(u)} v_i / sqrt(|N(u)| * deg_i),   v_i = (1/(K+1)) * sum_{k<K} e_i^(k),

where ``e_i^(k)`` is item i's layer-k vector on the training graph and ``deg_i`` its training
degree. ``v`` and ``deg`` are the fitted state, so any customer (seen in training or not) is
embedded from its own items at t: inductive, and identical items give identical rows.

BPR training holds out edges: each epoch splits the edges into folds and, per fold, propagates
over the other folds and ranks each held-out (customer, item) above an item the customer does
not have, drawn in proportion to item popularity. Predicting an item from the customer's *other*
items is what makes items that co-occur land close together; scoring an edge that is also in the
propagation graph would reward a customer's own items trivially, and uniform negatives would
reward popularity alone. Columns: 64 embedding dims, the embedding's norm and
log1p of the number of items (the extras are defined, 0, for customers with no items).
"""

from __future__ import annotations

import warnings

import duckdb
import numpy as np
import torch
from torch_geometric.nn import LightGCN

from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import MonthInputs
from finai_models.phase0.ssm import torch_session

N_LAYERS = 3
EPOCHS, FOLDS, LR, LAMBDA_REG, INIT_STD = 8, 5, 0.2, 1e-4, 0.1
RECENT_DAYS, MIN_RECENT_TXNS = 90, 2


def customer_items(x: MonthInputs, n_l2: int) -> np.ndarray:
    """bool ``[n, products + n_l2]``: products held at t, then L2 categories used >= 2 times in 90 days."""
    recent = (x.txn_days_before <= RECENT_DAYS) & (x.txn_l2 >= 0)
    owner = np.repeat(np.arange(x.n, dtype=np.int32), np.diff(x.txn_offsets))[recent]
    counts = np.bincount(owner.astype(np.int64) * n_l2 + x.txn_l2[recent], minlength=x.n * n_l2)
    return np.concatenate([x.holdings[:, -1], counts.reshape(x.n, n_l2) >= MIN_RECENT_TXNS], axis=1)


def normalized_adjacency(users: np.ndarray, items: np.ndarray, n_nodes: int) -> torch.Tensor:
    """Symmetric ``D^-1/2 A D^-1/2`` of the bipartite graph as sparse CSR (LightGCN's propagation matrix)."""
    row = np.concatenate([users, items])
    col = np.concatenate([items, users])
    degree = np.bincount(row, minlength=n_nodes).astype(np.float32)
    weight = 1.0 / np.sqrt(degree[row] * degree[col])
    coo = torch.sparse_coo_tensor(torch.from_numpy(np.stack([row, col])), torch.from_numpy(weight),
                                  (n_nodes, n_nodes), check_invariants=False).coalesce()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return coo.to_sparse_csr()


class GraphCollaborative(FeatureGroupModel):
    """Inductive LightGCN customer embedding (64) + norm + log1p(item count) (see the module docstring)."""

    name = "graph_collaborative"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.n_items = len(settings.products) + len(settings.mcc.l2_names)
        self.item_vectors = np.zeros((self.n_items, dim - 2), np.float32)
        self.item_degree = np.zeros(self.n_items, np.float32)
        self.fit_losses: list[float] = []   # mean BPR loss per epoch

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        rng = np.random.default_rng(self.seed)
        limit = int(self.settings.phase0.fit_sample_customers)
        n_l2 = len(self.settings.mcc.l2_names)
        held = np.concatenate([customer_items(x, n_l2)[rng.choice(x.n, size=min(limit, x.n), replace=False)]
                               for x in train])
        held = held[held.any(axis=1) & ~held[:, held.any(axis=0)].all(axis=1)]    # a negative must exist
        self.item_degree = held.sum(axis=0).astype(np.float32)
        with torch_session(self.seed):
            self.item_vectors, self.fit_losses = _train_lightgcn(held, self.dim - 2, rng)

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        """Embed each distinct item set once, so equal item sets give bit-identical rows (and 1M rows cost little)."""
        held = customer_items(x, len(self.settings.mcc.l2_names))
        packed = np.ascontiguousarray(np.packbits(held, axis=1))
        keys = packed.view(np.dtype((np.void, packed.shape[1]))).ravel()
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        sets = held[first].astype(np.float32)
        count = sets.sum(axis=1)
        item_scale = np.where(self.item_degree > 0, 1.0 / np.sqrt(np.maximum(self.item_degree, 1)), 0.0)
        embedding = (sets * item_scale.astype(np.float32)) @ self.item_vectors / np.sqrt(np.maximum(count, 1))[:, None]
        columns = np.column_stack([embedding, np.linalg.norm(embedding, axis=1), np.log1p(count)])
        return columns.astype(np.float32)[inverse.ravel()]

    def state_dict(self):
        return {"item_vectors": self.item_vectors, "item_degree": self.item_degree}

    def load_state_dict(self, state):
        self.item_vectors, self.item_degree = state["item_vectors"], state["item_degree"]

    def column_names(self):
        return [*(f"graph_emb_{i:02d}" for i in range(self.dim - 2)), "graph_emb_norm", "graph_log_items"]


def _train_lightgcn(held: np.ndarray, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, list[float]]:
    """BPR-train a LightGCN on customers ``held`` (bool [users, items]); return ``v`` [items, dim] and the losses."""
    n_users, n_items = held.shape
    users, items = np.nonzero(held)
    item_nodes = items + n_users
    model = LightGCN(n_users + n_items, dim, N_LAYERS, normalize=False)
    weight = model.embedding.weight
    with torch.no_grad():
        weight.zero_()
        weight[n_users:] = torch.randn(n_items, dim) * INIT_STD
    is_item = (torch.arange(len(weight)) >= n_users).float()[:, None]
    weight.register_hook(lambda grad: grad * is_item)          # customer rows stay zero
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    losses = []
    for _ in range(EPOCHS):
        total = 0.0
        for fold in np.array_split(rng.permutation(len(users)), FOLDS):
            keep = np.ones(len(users), bool)
            keep[fold] = False
            embedding = model.get_embedding(normalized_adjacency(users[keep], item_nodes[keep], len(weight)))
            negatives = _sample_negatives(held, users[fold], items, rng) + n_users
            u = _rows(embedding, users[fold])
            pos = (u * _rows(embedding, item_nodes[fold])).sum(-1)
            neg = (u * _rows(embedding, negatives)).sum(-1)
            node_id = torch.from_numpy(np.concatenate([item_nodes[fold], negatives]))
            loss = model.recommendation_loss(pos, neg, node_id=node_id, lambda_reg=LAMBDA_REG)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() / FOLDS
        losses.append(total)
    with torch.no_grad():
        adjacency = normalized_adjacency(users, item_nodes, len(weight))
        layer, layers = weight, [weight]
        for conv in model.convs[:-1]:
            layer = conv(layer, adjacency)
            layers.append(layer)
        vectors = sum(layers)[n_users:] / (N_LAYERS + 1)
    return vectors.numpy().astype(np.float32), losses


def _rows(embedding: torch.Tensor, index: np.ndarray) -> torch.Tensor:
    """``embedding[index]`` via ``index_select``, whose backward sums repeated rows in a fixed order
    (the backward of advanced indexing is not bit-reproducible on 2 threads, and a refit must be)."""
    return embedding.index_select(0, torch.from_numpy(index))


def _sample_negatives(held: np.ndarray, users: np.ndarray, items: np.ndarray,
                      rng: np.random.Generator) -> np.ndarray:
    """One item per row of ``users`` that the customer does not have, drawn as often as items are held.

    Uniform negatives would let BPR win on popularity alone (a positive is usually a popular
    item, a uniform negative a rare one) and collapse all items onto one direction; drawing
    negatives from the edge list itself leaves co-occurrence as the only signal.
    """
    negatives = items[rng.integers(len(items), size=len(users))]
    clash = held[users, negatives]
    while clash.any():
        negatives[clash] = items[rng.integers(len(items), size=int(clash.sum()))]
        clash = held[users, negatives]
    return negatives
