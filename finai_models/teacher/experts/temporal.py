"""The temporal expert: three complementary encoders over the customer's real monthly sequence.

Why three branches: each sees the 12 months differently. A Mamba block (selective state space,
causal) summarises the history into its state and is read at the last month, the snapshot month,
which every scored customer has. A liquid time-constant cell (Hasani et al. 2021) is a small
continuous-time RNN whose per-unit time constant depends on the input, so it can react fast to
a sudden change (a salary stopping) yet integrate slowly otherwise; it simply skips absent months
(the state is carried unchanged), so a late joiner's history starts when the customer does. A
Transformer encoder attends over all present months at once (order from a learned positional
encoding) and is mean-pooled over them, catching patterns that are not recency-weighted. Absent
months (mask False, zeros in the data) are zeroed after the projection and excluded from attention
and from the LTC update, so their values cannot reach the output. An MLP over the flat routed
columns (HMM states, Mamba embeddings of Phase 0, behaviour features) adds the precomputed view.

Dense variant (``spec.sequence_shape`` None: the public API on an arbitrary table). Adjacent
columns of a table are not months, so nothing here may presume an order: each column j becomes a
token ``x_j w_j + b_j`` of width ``d_model`` (the feature tokenizer of FT-Transformer, Gorishniy et
al. 2021; the per-column ``w_j, b_j`` say which column a token is, so no positional encoding is
needed), a learned CLS token joins them, and a Transformer encoder attends over the set.
The readout is the CLS output (a learned pooling) and the mean over the feature tokens. Mamba and
the LTC cell are not built: both read their input as an ordered recurrence. Permuting the columns
together with their ``w_j, b_j`` (and the flat MLP's input weights) leaves the output unchanged.
Attention costs grow with the square of the token count, so above ``max_tokens`` columns (128) a
learned linear map first mixes the columns into ``max_tokens`` scalars, which are then tokenized
(at 1,500 columns a training step with 128 tokens cost about what the earlier Mamba/LTC/Transformer
over 94 blocks of 16 columns did on one CPU thread; with 256 tokens, four times as much).
The variant is fixed at construction: an expert built for sequences requires ``side[SEQUENCE]``,
one built without refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from finai_models.phase0.ssm import MambaBlock
from finai_models.teacher.experts.base import SEQUENCE, SEQUENCE_MASK, Expert, ExpertInput, mlp


class LiquidTimeConstantCell(nn.Module):
    """One LTC cell advanced by the fused semi-implicit Euler step of Hasani et al. (2021).

    ``dh/dt = -(1/τ + f) h + f A`` with ``f = sigmoid(W_in x + W_rec h + b)`` becomes
    ``h' = (h + dt f A) / (1 + dt (1/τ + f))``: stable for any ``dt > 0`` because the denominator is
    at least 1, and ``|h|`` stays within the range of ``A``. ``τ = softplus(·) + 0.1`` keeps the time
    constant positive and away from zero.
    """

    def __init__(self, input_size: int, hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        self.input = nn.Linear(input_size, hidden_size)                        # W_in and the bias b
        self.recurrent = nn.Linear(hidden_size, hidden_size, bias=False)      # W_rec
        self.tau_raw = nn.Parameter(torch.zeros(hidden_size))
        self.A = nn.Parameter(torch.randn(hidden_size))

    @property
    def tau(self) -> torch.Tensor:
        return F.softplus(self.tau_raw) + 0.1

    def step(self, x_t: torch.Tensor, h: torch.Tensor, dt: float = 1.0,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """One step ``[B, input], [B, hidden] -> [B, hidden]``; rows where ``mask`` [B] is False keep ``h``."""
        f = torch.sigmoid(self.input(x_t) + self.recurrent(h))
        h_new = (h + dt * f * self.A) / (1 + dt * (1 / self.tau + f))
        return h_new if mask is None else torch.where(mask[:, None], h_new, h)

    def forward(self, seq: torch.Tensor, mask: torch.Tensor, dt: float = 1.0) -> torch.Tensor:
        """Unroll over ``seq [B, L, input]`` from ``h = 0``, skipping absent steps; the last state ``[B, hidden]``."""
        h = seq.new_zeros(seq.shape[0], self.hidden_size)
        for t in range(seq.shape[1]):
            h = self.step(seq[:, t], h, dt, mask[:, t])
        return h


class FeatureTokenizer(nn.Module):
    """``[B, dim] -> [B, n_tokens, d_model]``: token j is ``x_j w_j + b_j`` (FT-Transformer's tokenizer).

    With ``dim > max_tokens`` a bias-free learned ``Linear(dim -> max_tokens)`` first mixes the columns,
    so attention runs over at most ``max_tokens`` tokens whatever the table's width.
    """

    def __init__(self, dim: int, d_model: int, max_tokens: int = 128):
        super().__init__()
        self.mix = nn.Linear(dim, max_tokens, bias=False) if dim > max_tokens else None
        self.n_tokens = min(dim, max_tokens)
        bound = d_model ** -0.5                # FT-Transformer's initialisation
        self.weight = nn.Parameter(torch.empty(self.n_tokens, d_model).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(self.n_tokens, d_model).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mix is not None:
            x = self.mix(x)
        return x[..., None] * self.weight + self.bias


class Temporal(Expert):
    """Mamba + LTC + Transformer over the monthly sequence, or a Transformer over feature tokens
    (dense variant), plus an MLP over the flat routed columns; see the module docstring."""

    name: ClassVar[str] = "temporal"
    needs: ClassVar[tuple[str, ...]] = (SEQUENCE, SEQUENCE_MASK)

    def __init__(self, spec: ExpertInput, width: int, *, d_model: int = 32, d_inner: int = 32, d_state: int = 8,
                 d_conv: int = 4, dt_rank: int = 4, ltc_units: int = 32, heads: int = 4, layers: int = 1,
                 ff_dim: int = 64, dropout: float = 0.1, max_tokens: int = 128, flat_hidden: int = 128,
                 flat_dim: int = 64):
        super().__init__(spec, width)
        self.sequential = spec.sequence_shape is not None
        layer = nn.TransformerEncoderLayer(d_model, heads, dim_feedforward=ff_dim, dropout=dropout, batch_first=True)
        self.transformer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.flat = nn.Sequential(*mlp([spec.dim, flat_hidden, flat_dim], dropout=dropout), nn.LayerNorm(flat_dim),
                                  nn.SiLU())
        if self.sequential:
            steps, features = spec.sequence_shape
            self.seq_proj = nn.Linear(features, d_model)
            self.seq_pos = nn.Parameter(0.02 * torch.randn(steps, d_model))
            self.mamba = MambaBlock(d_model, d_inner, d_state, d_conv, dt_rank)
            self.mamba_norm = nn.LayerNorm(d_model)
            self.ltc = LiquidTimeConstantCell(d_model, ltc_units)
            self.head = nn.Sequential(nn.Linear(2 * d_model + ltc_units + flat_dim, width), nn.LayerNorm(width),
                                      nn.SiLU())
        else:
            self.tokenizer = FeatureTokenizer(spec.dim, d_model, max_tokens)
            self.cls = nn.Parameter(0.02 * torch.randn(d_model))
            self.head = nn.Sequential(nn.Linear(2 * d_model + flat_dim, width), nn.LayerNorm(width), nn.SiLU())

    def branches(self, h: torch.Tensor, mask: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three encoders over projected steps ``h [B, L, d_model]``, ``mask [B, L]``, ``pos [L, d_model]``.

        A row with no present step gets its last step marked present (its values are then the
        data's zeros), so attention always has a key and the pooled mean is defined.
        """
        mask = mask.clone()
        mask[:, -1] |= ~mask.any(dim=1)
        h = h * mask[..., None].to(h.dtype)
        mamba = self.mamba_norm(h + self.mamba(h))[:, -1]
        ltc = self.ltc(h, mask)
        encoded = self.transformer(h + pos.to(h.dtype), src_key_padding_mask=~mask)
        weights = mask[..., None].to(encoded.dtype)
        pooled = (encoded * weights).sum(dim=1) / weights.sum(dim=1)
        return {"mamba": mamba, "ltc": ltc, "transformer": pooled}

    def feature_encoding(self, x: torch.Tensor) -> torch.Tensor:
        """The dense variant's ``[B, 2 d_model]``: the CLS output and the mean of the encoded feature tokens."""
        tokens = self.tokenizer(x)
        cls = self.cls.to(tokens.dtype).expand(len(x), 1, -1)
        encoded = self.transformer(torch.cat([cls, tokens], dim=1))
        return torch.cat([encoded[:, 0], encoded[:, 1:].mean(dim=1)], dim=1)

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if x.shape[-1] != self.spec.dim:
            raise ValueError(f"{self.name} expects {self.spec.dim} routed columns, got {x.shape[-1]}")
        if not self.sequential:
            if SEQUENCE in side:
                raise ValueError(f"{self.name} was built without spec.sequence_shape but received a sequence")
            return self.head(torch.cat([self.feature_encoding(x), self.flat(x)], dim=1))
        if SEQUENCE not in side:
            raise ValueError(f"{self.name} was built for sequences (spec.sequence_shape) but the batch has none")
        seq = side[SEQUENCE]
        if tuple(seq.shape[1:]) != self.spec.sequence_shape:
            raise ValueError(f"sequence of shape {tuple(seq.shape[1:])}, expected {self.spec.sequence_shape}")
        mask = side.get(SEQUENCE_MASK)
        mask = seq.new_ones(seq.shape[:2], dtype=torch.bool) if mask is None else mask.bool()
        parts = self.branches(self.seq_proj(seq), mask, self.seq_pos)
        return self.head(torch.cat([*parts.values(), self.flat(x)], dim=1))
