"""Hyperbolic experts: a graph network on the merchant-category tree, or a hyperbolic MLP.

Trees embed in the Poincaré ball with low distortion (volume grows exponentially with the radius,
like the node count of a tree), so layers that live in the ball keep "general vs specific" (distance
from the origin) and "which branch" (direction) apart, which flat layers blur. The ball has
curvature -c; points stay at norm <= (1 - 1e-5)/sqrt(c) and every artanh argument is clamped, so
the maps stay finite even for huge tangent vectors. All ball arithmetic runs in float32: in
bfloat16 the boundary (where the tree's leaves live) is not resolvable.

``HGCN`` with a hierarchy graph in ``spec.extras["hierarchy"]`` (see ``mcc_hierarchy_graph``) is the
HGCN of Chami et al. (2019) over the MCC tree; without one (e.g. the public API's spec) it runs a
hyperbolic neural network (Ganea et al. 2018) on the routed vector.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from finai_models.config import MccHierarchy
from finai_models.phase0.groups.hyperbolic import mcc_disk
from finai_models.teacher.experts.base import Expert, ExpertInput, Field, mlp

BALL_EPS = 1e-5     # points stay at norm <= (1 - BALL_EPS) / sqrt(c)
MIN_NORM = 1e-15    # floor of norms that are divided by
MCC_FIELD = "mcc_top30_multihot"
_CODE_COLUMN = re.compile(r"mcc_(\d+)")


# --- Poincaré-ball operations, curvature -c ----------------------------------------------------
def _norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm over the last axis, floored so that it divides safely and has a finite gradient at 0."""
    return x.pow(2).sum(-1, keepdim=True).clamp_min(MIN_NORM ** 2).sqrt()


def _artanh(z: torch.Tensor) -> torch.Tensor:
    return torch.atanh(z.clamp(-1 + BALL_EPS, 1 - BALL_EPS))


def project(x: torch.Tensor, c: float) -> torch.Tensor:
    """Pull points whose norm passed (1 - 1e-5)/sqrt(c) back onto that sphere (float rounding, huge inputs)."""
    max_norm = (1 - BALL_EPS) / c ** 0.5
    norm = _norm(x)
    return torch.where(norm > max_norm, x / norm * max_norm, x)


def expmap0(u: torch.Tensor, c: float) -> torch.Tensor:
    """Tangent vector at the origin -> point of the ball: tanh(sqrt(c)|u|) u / (sqrt(c)|u|)."""
    sqrt_c = c ** 0.5
    norm = _norm(u)
    return project(torch.tanh(sqrt_c * norm) * u / (sqrt_c * norm), c)


def logmap0(y: torch.Tensor, c: float) -> torch.Tensor:
    """Point of the ball -> tangent vector at the origin, the inverse of ``expmap0``."""
    sqrt_c = c ** 0.5
    norm = _norm(y)
    return _artanh(sqrt_c * norm) * y / (sqrt_c * norm)


def mobius_add(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """Möbius addition x ⊕ y, the ball's analogue of translation (not commutative)."""
    xy = (x * y).sum(-1, keepdim=True)
    x2 = x.pow(2).sum(-1, keepdim=True)
    y2 = y.pow(2).sum(-1, keepdim=True)
    num = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
    den = 1 + 2 * c * xy + c ** 2 * x2 * y2
    return project(num / den.clamp_min(MIN_NORM), c)


def mobius_matvec(m: torch.Tensor, x: torch.Tensor, c: float) -> torch.Tensor:
    """Möbius matrix-vector product M ⊗ x for ``m`` [out, in]: M applied in the tangent space, with the
    depth of x rescaled by |Mx|/|x| so that it reduces to M x near the origin."""
    sqrt_c = c ** 0.5
    x_norm = _norm(x)
    mx = x @ m.transpose(-1, -2)
    mx_norm = _norm(mx)
    out = torch.tanh(mx_norm / x_norm * _artanh(sqrt_c * x_norm)) * mx / (mx_norm * sqrt_c)
    return project(out, c)


def distance(x: torch.Tensor, y: torch.Tensor, c: float) -> torch.Tensor:
    """Geodesic distance [...]: 2/sqrt(c) artanh(sqrt(c) |(-x) ⊕ y|)."""
    sqrt_c = c ** 0.5
    return 2 / sqrt_c * _artanh(sqrt_c * _norm(mobius_add(-x, y, c))).squeeze(-1)


# --- layers ---------------------------------------------------------------------------------------
class MobiusLinear(nn.Module):
    """W ⊗ h ⊕ b: a linear map of the ball, the bias a tangent vector at the origin mapped into the ball."""

    def __init__(self, d_in: int, d_out: int, c: float):
        super().__init__()
        self.c = c
        self.weight = nn.Parameter(torch.empty(d_out, d_in))
        nn.init.xavier_uniform_(self.weight)
        self.bias = nn.Parameter(torch.full((d_out,), 1e-3))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return mobius_add(mobius_matvec(self.weight, h, self.c), expmap0(self.bias, self.c), self.c)


class MobiusLayer(nn.Module):
    """σ^⊗(W ⊗ h ⊕ b), σ applied in the tangent space at the origin: one layer of a hyperbolic MLP."""

    def __init__(self, d_in: int, d_out: int, c: float):
        super().__init__()
        self.c = c
        self.linear = MobiusLinear(d_in, d_out, c)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return expmap0(F.silu(logmap0(self.linear(h), self.c)), self.c)


class HGCNLayer(nn.Module):
    """h' = σ^⊗(AGG(W ⊗ h ⊕ b)) over the nodes of a graph (Chami et al. 2019).

    Aggregation is the adjacency-weighted mean in the tangent space at the origin (the tree is
    rooted there, so the origin is the natural reference point); ``adjacency`` [n, n] is row
    normalised with self loops, so a node keeps part of itself. With the identity it is
    ``MobiusLayer`` per node.
    """

    def __init__(self, d_in: int, d_out: int, c: float):
        super().__init__()
        self.c = c
        self.linear = MobiusLinear(d_in, d_out, c)

    def forward(self, h: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        """``h`` [B, n, d_in] points of the ball -> [B, n, d_out]."""
        tangent = adjacency @ logmap0(self.linear(h), self.c)
        return expmap0(F.silu(tangent), self.c)


# --- the merchant-category tree -------------------------------------------------------------------
@dataclass(frozen=True)
class HierarchyGraph:
    """A rooted tree for ``HGCN``: node 0 is the root.

    ``adjacency`` [n, n] float32 is row normalised with self loops; ``leaf_column`` [n] int is the
    index into the routed slice of the column carrying the node's customer signal, -1 for nodes
    without one; ``init_tangent`` [n, e] float32, if given, seeds the first e coordinates of the
    learned node embeddings (tangent vectors at the origin, curvature 1).
    """

    node_names: tuple[str, ...]
    adjacency: np.ndarray
    leaf_column: np.ndarray
    init_tangent: np.ndarray | None = None


def _mcc_code_columns(fields: Sequence[Field]) -> list[tuple[int, int]] | None:
    """(code, routed column) of every ``mcc_<code>`` column (not ``_log`` copies, not the OOV count)."""
    field = next((f for f in fields if f.group == MCC_FIELD), None)
    if field is None:
        return None
    return [(int(m.group(1)), field.start + j) for j, name in enumerate(field.columns)
            if (m := _CODE_COLUMN.fullmatch(name))]


def mcc_hierarchy_graph(mcc: MccHierarchy, fields: Sequence[Field], code_radius: float = 0.95
                        ) -> HierarchyGraph | None:
    """root - L1 - L2 - code tree over the codes routed as ``mcc_<code>`` columns of ``mcc_top30_multihot``.

    Returns None without that field or without any code column: there is then no customer signal
    to place on the tree. Codes missing from the hierarchy hang from the root. The initial tangent
    vectors are Phase 0's fixed disk (``mcc_disk``) mapped to the tangent space, with every code on
    its L2's ray share at ``code_radius``, so training starts from a tree-shaped embedding.
    """
    code_columns = _mcc_code_columns(fields)
    if not code_columns:
        return None
    n1, n2 = len(mcc.l1_names), len(mcc.l2_names)
    code_l2 = dict(zip(mcc.codes, mcc.code_l2, strict=True))
    names = ["root", *(f"l1:{n}" for n in mcc.l1_names), *(f"l2:{n}" for n in mcc.l2_names),
             *(f"mcc:{code}" for code, _ in code_columns)]
    n = len(names)
    parent = np.zeros(n, np.int64)
    parent[1 + n1:1 + n1 + n2] = 1 + np.asarray(mcc.l2_to_l1)
    l2_of = np.array([code_l2.get(code, -1) for code, _ in code_columns])
    parent[1 + n1 + n2:] = np.where(l2_of >= 0, 1 + n1 + l2_of, 0)
    adjacency = np.eye(n, dtype=np.float64)
    adjacency[np.arange(1, n), parent[1:]] = adjacency[parent[1:], np.arange(1, n)] = 1
    adjacency /= adjacency.sum(1, keepdims=True)

    l1_points, l2_points = mcc_disk(mcc)
    l2_angle = np.arctan2(l2_points[:, 1], l2_points[:, 0])
    siblings = np.bincount(np.asarray(mcc.l2_to_l1), minlength=n1)[np.asarray(mcc.l2_to_l1)]
    share = 2 * np.pi / n1 / siblings                                  # angular width of each L2
    points = np.zeros((n, 2))
    points[1:1 + n1], points[1 + n1:1 + n1 + n2] = l1_points, l2_points
    for l2 in np.unique(l2_of[l2_of >= 0]):
        rows = np.flatnonzero(l2_of == l2)
        angle = l2_angle[l2] + (np.arange(len(rows)) - (len(rows) - 1) / 2) * share[l2] / len(rows)
        points[1 + n1 + n2 + rows] = code_radius * np.stack([np.cos(angle), np.sin(angle)], axis=1)
    radius = np.linalg.norm(points, axis=1, keepdims=True)
    tangent = np.arctanh(radius) * points / np.maximum(radius, MIN_NORM)
    leaf = np.full(n, -1, np.int64)
    leaf[1 + n1 + n2:] = [col for _, col in code_columns]
    return HierarchyGraph(tuple(names), adjacency.astype(np.float32), leaf, tangent.astype(np.float32))


# --- the expert -----------------------------------------------------------------------------------
class HGCN(Expert):
    """Hyperbolic GCN over the merchant-category tree, personalised by the customer's MCC usage.

    Full variant (``spec.extras["hierarchy"]`` a ``HierarchyGraph``): node v enters as the tangent
    vector e_v + s_v f_v (learned embedding e_v and signal direction f_v, s_v the customer's value of
    the node's column, 0 for internal nodes), mapped into the ball; ``layers`` HGCN layers run over
    the tree. The default, 3, is the tree's depth: with fewer, the root never hears from the codes
    and its readout would be the same for every customer. Readout: the root's tangent vector and
    the softmax(s)-weighted mean of the code nodes' tangent vectors (columns are standardised, so
    raw signals may be negative; the softmax leans to the codes this customer uses more than
    others), concatenated with an MLP over the other routed columns (Poincaré coordinates of the
    L1/L2 spend centroids, depths, the out-of-vocabulary count, log copies) -> Linear -> width.

    Dense variant (no hierarchy, e.g. the public API): an HNN on the routed vector,
    expmap0(Linear(x)) -> 2 ``MobiusLayer`` -> logmap0 -> Linear -> width.
    """

    name: ClassVar[str] = "hgcn"
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: ExpertInput, width: int, *, embed_dim: int = 16, hidden: int = 32, layers: int = 2,
                 curvature: float = 1.0, dropout: float = 0.0):
        super().__init__(spec, width)
        self.c = curvature
        graph = spec.extras.get("hierarchy")
        self.full = isinstance(graph, HierarchyGraph)
        if not self.full:
            self.encode = nn.Linear(spec.dim, embed_dim)
            self.hnn = nn.ModuleList([MobiusLayer(embed_dim, embed_dim, curvature) for _ in range(2)])
            self.head = nn.Linear(embed_dim, width)
            return
        n = len(graph.node_names)
        embedding = 0.01 * torch.randn(n, embed_dim)
        if graph.init_tangent is not None:
            k = min(embed_dim, graph.init_tangent.shape[1])
            embedding[:, :k] += torch.as_tensor(graph.init_tangent[:, :k])
        self.node_embedding = nn.Parameter(embedding)
        self.signal_direction = nn.Parameter(0.1 * torch.randn(n, embed_dim))
        leaf = torch.as_tensor(graph.leaf_column, dtype=torch.long)
        self.register_buffer("adjacency", torch.as_tensor(graph.adjacency, dtype=torch.float32), persistent=False)
        self.register_buffer("leaf_column", leaf, persistent=False)
        rest = sorted(set(range(spec.dim)) - set(leaf[leaf >= 0].tolist()))
        self.register_buffer("rest_columns", torch.tensor(rest, dtype=torch.long), persistent=False)
        self.gcn = nn.ModuleList([HGCNLayer(embed_dim, embed_dim, curvature) for _ in range(layers)])
        self.rest = mlp([len(rest), hidden, hidden], dropout) if rest else None
        self.head = nn.Linear(2 * embed_dim + (hidden if rest else 0), width)

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor]) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            x32 = x.float()
            features = self._tree(x32) if self.full else self._dense(x32)
        return self.head(features)

    def _dense(self, x: torch.Tensor) -> torch.Tensor:
        h = expmap0(self.encode(x), self.c)
        for layer in self.hnn:
            h = layer(h)
        return logmap0(h, self.c)

    def _tree(self, x: torch.Tensor) -> torch.Tensor:
        is_leaf = self.leaf_column >= 0
        signal = torch.where(is_leaf, x[:, self.leaf_column.clamp_min(0)], 0.0)             # [B, n]
        h = expmap0(self.node_embedding + signal[..., None] * self.signal_direction, self.c)
        for layer in self.gcn:
            h = layer(h, self.adjacency)
        tangent = logmap0(h, self.c)                                                         # [B, n, e]
        weight = torch.softmax(signal.masked_fill(~is_leaf, float("-inf")), dim=1)
        parts = [tangent[:, 0], (weight[..., None] * tangent).sum(1)]
        if self.rest is not None:
            parts.append(self.rest(x[:, self.rest_columns]))
        return torch.cat(parts, dim=1)
