"""DeepFM over the feature groups of the routed slice: explicit pairwise interactions plus a deep tower.

Why fields are feature groups: DeepFM (Guo et al. 2017) embeds each *field* and lets the FM part
model every pairwise interaction between fields at the cost of one k-vector per field. Our inputs
are dense, so a field's embedding is a bias-free ``Linear(field.dim -> k)``: ``v_f = Σ_{i∈f} x_i w_i``.
With that choice the FM term ``Σ_{f<g} v_f ⊙ v_g`` is exactly a factorization machine over the raw
columns restricted to cross-group pairs (``x_i x_j w_i ⊙ w_j`` for i, j in different groups), and a
group that is all zero contributes nothing, as an absent categorical field would. The FM term is
kept as a k-vector (not summed to a scalar) so the head can weigh the latent interaction factors.

The first-order part is one weight vector per field (a scalar per field, not per column), so the
head sees which groups matter linearly; the deep tower reads the concatenated field embeddings, the
same embeddings the FM part uses, as in the paper. LayerNorm replaces BatchNorm so batch size 1
(online scoring) works. Dense fallback: when the spec has no fields, the slice is cut into
consecutive fields of ``dense_field_width`` columns (the last one may be shorter).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from finai_models.teacher.experts.base import Expert, ExpertInput, Field, mlp


def fm_interaction(v: torch.Tensor) -> torch.Tensor:
    """The FM second-order term ``0.5 · [(Σ_f v_f)² − Σ_f v_f²] = Σ_{f<g} v_f ⊙ v_g``: ``[B, F, k] -> [B, k]``.

    Computed in at least float32 and returned in ``v``'s dtype: the difference of two large squares
    cancels badly in bfloat16's 8-bit mantissa.
    """
    w = v.to(torch.promote_types(v.dtype, torch.float32))
    total = w.sum(dim=1)
    return (0.5 * (total * total - (w * w).sum(dim=1))).to(v.dtype)


def dense_fields(dim: int, size: int = 32) -> tuple[Field, ...]:
    """Consecutive fields of ``size`` columns tiling ``0:dim`` (the last may be shorter)."""
    if size <= 0:
        raise ValueError(f"field width must be positive, got {size}")
    return tuple(Field(f"dense_{i}", start, min(start + size, dim)) for i, start in enumerate(range(0, dim, size)))


def _check_tiling(fields: tuple[Field, ...], dim: int) -> None:
    end = 0
    for f in fields:
        if f.start != end or f.end <= f.start:
            raise ValueError(f"field {f.group!r} [{f.start}:{f.end}] does not continue the tiling at column {end}")
        end = f.end
    if end != dim:
        raise ValueError(f"fields cover columns 0:{end}, the routed slice has {dim}")


class DeepFM(Expert):
    """First-order + FM + deep tower over per-group field embeddings, mixed by a small head to ``width``."""

    name: ClassVar[str] = "deepfm"

    def __init__(self, spec: ExpertInput, width: int, *, k: int = 16, hidden: tuple[int, ...] = (256, 128),
                 dropout: float = 0.1, dense_field_width: int = 32):
        super().__init__(spec, width)
        self.fields = spec.fields or dense_fields(spec.dim, dense_field_width)
        _check_tiling(self.fields, spec.dim)
        n = len(self.fields)
        self.embeddings = nn.ModuleList(nn.Linear(f.dim, k, bias=False) for f in self.fields)
        self.first_order = nn.ModuleList(nn.Linear(f.dim, 1) for f in self.fields)
        self.deep = nn.Sequential(*mlp([n * k, *hidden], dropout=dropout), nn.LayerNorm(hidden[-1]), nn.SiLU(),
                                  nn.Dropout(dropout))
        self.head = nn.Sequential(nn.Linear(n + k + hidden[-1], width), nn.LayerNorm(width), nn.SiLU())

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if x.shape[-1] != self.spec.dim:
            raise ValueError(f"{self.name} expects {self.spec.dim} routed columns, got {x.shape[-1]}")
        parts = [x[:, f.start:f.end] for f in self.fields]
        v = torch.stack([emb(p) for emb, p in zip(self.embeddings, parts, strict=True)], dim=1)   # [B, F, k]
        first = torch.cat([lin(p) for lin, p in zip(self.first_order, parts, strict=True)], dim=1)  # [B, F]
        deep = self.deep(v.flatten(1))
        return self.head(torch.cat([first, fm_interaction(v), deep], dim=1))
