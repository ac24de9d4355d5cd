"""How the teacher's networks meet their inputs: code columns become embeddings, not numbers.

A segment code, a region, a GMM cluster or the MCC of a past transaction is an index into a
vocabulary; fed as a number, "region 17" would sit between regions 16 and 18. Every code column the
feature schema declares (``codes``: column -> vocabulary) gets a learned embedding instead. The
200 MCC slots of the lag tensor share one vocabulary, so they share one embedding table and are
pooled over the customer's real transactions (padding index 0 is masked): a masked mean and an
attention-weighted sum, so both "what I usually buy" and "the purchases that stand out" reach the
experts.

``InputLayer`` builds the matrix every architecture reads, ``[x with code columns zeroed, code
embeddings]``; ``CodeLayout`` says where each vocabulary's output sits, so expert routing can send
it to the experts that read its feature group (see ``ModelSpec.from_feature_schema``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

EMBEDDING_DIM = 8          # one code column
POOLED_DIM = 16            # a vocabulary shared by many slots (mean and attention pools: 2 x 16 outputs)


@dataclass(frozen=True)
class Vocabulary:
    """One embedding table: the code columns (indices into x) that draw from it, its size, its group."""

    name: str
    columns: tuple[int, ...]
    size: int
    group: str = ""

    @property
    def pooled(self) -> bool:
        return len(self.columns) > 1

    @property
    def out_dim(self) -> int:
        return 2 * POOLED_DIM if self.pooled else EMBEDDING_DIM


@dataclass(frozen=True)
class CodeLayout:
    """Every vocabulary, in order; its outputs follow the ``n_features`` raw columns."""

    vocabularies: tuple[Vocabulary, ...] = ()

    @property
    def out_dim(self) -> int:
        return sum(v.out_dim for v in self.vocabularies)

    @property
    def code_columns(self) -> tuple[int, ...]:
        return tuple(sorted(c for v in self.vocabularies for c in v.columns))

    def slots(self, n_features: int) -> dict[str, np.ndarray]:
        """Vocabulary -> indices of its outputs in the input layer's matrix."""
        out, at = {}, n_features
        for v in self.vocabularies:
            out[v.name] = np.arange(at, at + v.out_dim, dtype=np.int64)
            at += v.out_dim
        return out

    @staticmethod
    def build(columns: Sequence[str], vocab_of: Mapping[str, str], code_max: np.ndarray,
              group_of: Mapping[str, str] | None = None) -> CodeLayout:
        """From the schema's ``codes`` and the largest training index of every column (the encoder's)."""
        index = {c: j for j, c in enumerate(columns)}
        members: dict[str, list[int]] = {}
        for column, vocab in vocab_of.items():
            if column in index:
                members.setdefault(vocab, []).append(index[column])
        vocabs = []
        for name, cols in members.items():
            size = int(max(code_max[c] for c in cols)) + 1
            group = (group_of or {}).get(columns[cols[0]], "")
            vocabs.append(Vocabulary(name, tuple(sorted(cols)), max(size, 2), group))
        return CodeLayout(tuple(vocabs))


class CodeEmbeddings(nn.Module):
    """``x [B, d] -> [B, layout.out_dim]``: each vocabulary's embedding (pooled over its slots)."""

    def __init__(self, layout: CodeLayout):
        super().__init__()
        self.layout = layout
        self.tables = nn.ModuleList()
        self.attention = nn.ModuleList()
        for i, v in enumerate(layout.vocabularies):
            self.register_buffer(f"columns_{i}", torch.as_tensor(v.columns, dtype=torch.long), persistent=False)
            dim = POOLED_DIM if v.pooled else EMBEDDING_DIM
            self.tables.append(nn.Embedding(v.size, dim, padding_idx=0 if v.pooled else None))
            self.attention.append(nn.Linear(dim, 1) if v.pooled else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for i, (v, table, attend) in enumerate(zip(self.layout.vocabularies, self.tables, self.attention,
                                                    strict=True)):
            codes = x.index_select(1, getattr(self, f"columns_{i}")).long().clamp_(0, v.size - 1)
            if not v.pooled:
                parts.append(table(codes[:, 0]))
                continue
            e = table(codes)                                                        # [B, S, k]
            present = (codes > 0).unsqueeze(-1)
            count = present.sum(1).clamp_min(1)
            mean = (e * present).sum(1) / count
            logits = attend(e).masked_fill(~present, -1e4)
            weights = torch.softmax(logits.float(), dim=1).to(e.dtype) * present.any(1, keepdim=True)
            parts.append(torch.cat([mean, (weights * e).sum(1)], dim=1))
        return torch.cat(parts, dim=1)


class InputLayer(nn.Module):
    """``[x with its code columns zeroed, the code embeddings]``: what every architecture reads."""

    def __init__(self, n_features: int, layout: CodeLayout | None):
        super().__init__()
        self.layout = layout if layout and layout.vocabularies else None
        keep = torch.ones(n_features)
        if self.layout:
            keep[list(self.layout.code_columns)] = 0
        self.register_buffer("keep", keep, persistent=False)
        self.codes = CodeEmbeddings(self.layout) if self.layout else None
        self.out_dim = n_features + (self.layout.out_dim if self.layout else 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.codes is None:
            return x
        return torch.cat([x * self.keep.to(x.dtype), self.codes(x).to(x.dtype)], dim=1)
