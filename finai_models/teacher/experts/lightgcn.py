"""LightGCN expert: the customer's collaborative embedding, propagated once more through the item table.

Phase 0 embeds every customer inductively from its items (``phase0/groups/graph.py``): the first
``k`` columns of the ``graph_collaborative`` group are that embedding ``u``, and the fitted item
vectors ``E`` [n_items, k] arrive as ``spec.extras["item_embeddings"]``. This expert continues the
propagation with the item table as a trainable Parameter, initialised from ``E``:

* affinity ``s = u E^T / sqrt(k)`` [B, n_items]: how strongly the customer points at each item,
  the same score that ranks recommendations in LightGCN, so it goes to the head as is;
* one attention propagation step ``p = softmax(s) E``: the customer's item neighbourhood, weighted by
  affinity instead of by the fixed ``1 / sqrt(deg)`` of the graph;
* LightGCN's layer combination ``e = mean(u, p)``.

The head reads ``[e, s, MLP(other routed columns)]``. Fine-tuning ``E`` lets the supervised tasks
move items that BPR placed only by co-occurrence.

The routed columns are z-scored per dimension, so ``u`` is Phase 0's embedding up to a
per-dimension affine map; a learned scale and shift, initialised to the identity, maps it back
towards the item table's space.

Dense variant (no item table in ``extras`` or no ``graph_collaborative`` field, as for a tabular
dataset given to the public API): ``u = Linear(x)`` of dimension ``dense_dim`` and a learned item
table of ``dense_items`` rows drawn from ``N(0, 0.1^2)``; every routed column also feeds the
other-columns MLP. The same propagation then acts as learned soft clustering over latent "items".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
from torch import nn

from finai_models.teacher.experts.base import Expert, ExpertInput, mlp

GRAPH_GROUP = "graph_collaborative"
ITEM_EMBEDDINGS = "item_embeddings"


class LightGCN(Expert):
    """Affinity to, and attention propagation over, a fine-tuned item table (see the module docstring)."""

    name: ClassVar[str] = "lightgcn"

    def __init__(self, spec: ExpertInput, width: int, *, hidden: int = 64, other_width: int = 32,
                 dense_dim: int = 64, dense_items: int = 32, dropout: float = 0.0):
        super().__init__(spec, width)
        table = spec.extras.get(ITEM_EMBEDDINGS)
        graph = spec.field(GRAPH_GROUP)
        self.dense = table is None or graph is None
        if self.dense:
            items = torch.randn(dense_items, dense_dim) * 0.1
            self.to_user = nn.Linear(spec.dim, dense_dim)
            other = torch.arange(spec.dim)
        else:
            items = torch.as_tensor(np.asarray(table, dtype=np.float32))
            k = items.shape[1]
            if graph.dim < k:
                raise ValueError(f"field {GRAPH_GROUP} has {graph.dim} columns, fewer than the item table's {k}")
            self.register_buffer("user_columns", torch.arange(graph.start, graph.start + k))
            self.user_scale = nn.Parameter(torch.ones(k))
            self.user_shift = nn.Parameter(torch.zeros(k))
            keep = torch.ones(spec.dim, dtype=torch.bool)
            keep[graph.start:graph.start + k] = False
            other = keep.nonzero().squeeze(-1)
        self.items = nn.Parameter(items.clone())
        self.register_buffer("other_columns", other)
        n_items, k = items.shape
        self.other = mlp([other.numel(), hidden, other_width], dropout) if other.numel() else None
        self.head = mlp([k + n_items + (other_width if self.other is not None else 0), hidden, width], dropout)

    def user(self, x: torch.Tensor) -> torch.Tensor:
        """The customer embedding ``u`` [B, k]: Phase 0's columns (affine-corrected), or ``Linear(x)`` when dense."""
        if self.dense:
            return self.to_user(x)
        return x[:, self.user_columns] * self.user_scale + self.user_shift

    def affinity(self, u: torch.Tensor) -> torch.Tensor:
        """``s = u E^T / sqrt(k)`` [B, n_items]: the scaled dot product keeps the softmax unsaturated."""
        return u @ self.items.t() / math.sqrt(self.items.shape[1])

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor]) -> torch.Tensor:
        u = self.user(x)
        s = self.affinity(u)
        p = torch.softmax(s, dim=-1) @ self.items
        parts = [(u + p) / 2, s]
        if self.other is not None:
            parts.append(self.other(x[:, self.other_columns]))
        return self.head(torch.cat(parts, dim=-1))
