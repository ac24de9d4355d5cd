"""The PLE teacher and its two baselines (shared-bottom, MMoE), one output contract for all three.

Layer 0 (CGC, Tang et al. 2020): seven heterogeneous shared experts, each on its routed columns
(and side tensors), plus one private expert per task, all projected to a common width and
stacked as ``[batch, experts, width]``. Each task's gate is a softmax (or normalised sigmoid)
over [its own expert, the shared experts]; all task gates are one batched product (``einsum``), as
in AdaTT's PLE. By default a task's gate scores the experts' own outputs against a learned task
query (a gate over learned representations, not a linear map of 1,500 raw columns). Code columns
reach every architecture as embeddings (``embeddings.InputLayer``). The layer-0 gate weights are
returned by every forward: they are the explanation ("35% spending trend + 28% product fit"),
which the original computed but never recorded. Optional further extraction layers (homogeneous
MLP experts over the task streams and a shared stream) follow the PLE paper; towers map each task
stream to raw logits.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from finai_models.errors import ConfigError
from finai_models.teacher import ARCHITECTURES
from finai_models.teacher.embeddings import InputLayer
from finai_models.teacher.experts.base import Expert, mlp
from finai_models.teacher.spec import TASK_EXPERT, ModelSpec

EXPERT_CLASSES = {
    "deepfm": "finai_models.teacher.experts.deepfm:DeepFM",
    "temporal": "finai_models.teacher.experts.temporal:Temporal",
    "hgcn": "finai_models.teacher.experts.hyperbolic:HGCN",
    "perslay": "finai_models.teacher.experts.perslay:PersLay",
    "lightgcn": "finai_models.teacher.experts.lightgcn:LightGCN",
    "causal": "finai_models.teacher.experts.causal:Causal",
    "optimal_transport": "finai_models.teacher.experts.transport:OptimalTransport",
}
GATES = ("softmax", "sigmoid")
GATE_INPUTS = ("experts", "inputs")


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "ple"
    width: int = 64
    gate: str = "softmax"
    gate_input: str = "experts"      # experts: task queries over the experts' outputs | inputs: linear in x
    task_input: int = 128            # private experts read a shared projection this wide (0: the routed columns)
    extra_layers: int = 0          # PLE extraction layers after the heterogeneous layer 0
    extra_shared_experts: int = 2
    task_hidden: int = 128
    tower_hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    mmoe_experts: int = 8
    bottom_hidden: tuple[int, ...] = (512, 256)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {self.architecture!r}; expected one of {ARCHITECTURES}")
        if self.gate not in GATES:
            raise ConfigError(f"unknown gate type {self.gate!r}; expected one of {GATES}")
        if self.gate_input not in GATE_INPUTS:
            raise ConfigError(f"unknown gate input {self.gate_input!r}; expected one of {GATE_INPUTS}")


@dataclass
class TeacherOutput:
    logits: list[torch.Tensor]        # per task, raw [B, out_dim]
    gates: torch.Tensor | None        # [B, tasks, experts] layer-0 gate weights (None for shared-bottom)
    regularizer: torch.Tensor         # auxiliary loss of the experts (NOTEARS), a scalar


def expert_class(name: str) -> type[Expert]:
    module, _, cls = EXPERT_CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), cls)


class TaskBank(nn.Module):
    """T independent MLPs ``d_in -> hidden -> out`` evaluated as one batched product.

    ``x`` is either shared ``[B, d_in]`` (every task reads it) or per task ``[B, T, d_in]``.
    """

    def __init__(self, tasks: int, d_in: int, hidden: int, d_out: int, dropout: float):
        super().__init__()
        self.w1 = nn.Parameter(torch.empty(tasks, d_in, hidden))
        self.b1 = nn.Parameter(torch.zeros(tasks, hidden))
        self.w2 = nn.Parameter(torch.empty(tasks, hidden, d_out))
        self.b2 = nn.Parameter(torch.zeros(tasks, d_out))
        for w in (self.w1, self.w2):
            bound = w.shape[1] ** -0.5
            nn.init.uniform_(w, -bound, bound)
        self.norm = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.einsum("bd,tdh->bth" if x.dim() == 2 else "btd,tdh->bth", x, self.w1) + self.b1
        h = self.drop(nn.functional.silu(self.norm(h)))
        return torch.einsum("bth,tho->bto", h, self.w2) + self.b2


class Towers(nn.Module):
    """Per-task towers: a batched MLP on ``[B, T, width]`` streams, then one head per task (raw logits)."""

    def __init__(self, spec: ModelSpec, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.tower_hidden
        self.body = TaskBank(len(spec.tasks), cfg.width, hidden[0], hidden[-1], cfg.dropout)
        self.heads = nn.ModuleList(nn.Linear(hidden[-1], t.out_dim) for t in spec.tasks)

    def forward(self, streams: torch.Tensor) -> list[torch.Tensor]:
        h = nn.functional.silu(self.body(streams))
        return [head(h[:, i]) for i, head in enumerate(self.heads)]


def mix(gates: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """``[B, T, E] x [B, E, W] -> [B, T, W]``: every task's gated sum of the experts in one product."""
    return torch.bmm(gates, experts)


def gate_weights(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Softmax, or a normalised sigmoid (independent activations, renormalised to sum to 1)."""
    if kind == "softmax":
        return torch.softmax(logits.float(), dim=-1)
    s = torch.sigmoid(logits.float())
    return s / s.sum(dim=-1, keepdim=True).clamp_min(1e-6)


class PLE(nn.Module):
    """CGC layer 0 over the named heterogeneous experts (+ optional PLE layers) and task towers."""

    def __init__(self, spec: ModelSpec, cfg: ModelConfig | None = None):
        super().__init__()
        self.spec, self.cfg = spec, cfg or ModelConfig()
        cfg, n_tasks = self.cfg, len(spec.tasks)
        self.expert_names = tuple(spec.experts)
        self.inputs = InputLayer(spec.n_features, spec.codes)
        for name in (*self.expert_names, TASK_EXPERT):
            self.register_buffer(f"route_{name}", torch.as_tensor(spec.expert_columns[name]), persistent=False)
        self.experts = nn.ModuleDict({e: expert_class(e)(spec.expert_inputs[e], cfg.width) for e in self.expert_names})
        task_dim = len(spec.expert_columns[TASK_EXPERT])
        # A shared projection keeps the private experts from being 13 wide MLPs over every column
        # (2.6M of 3.2M parameters before): they must win on what they specialise, not on width.
        self.task_projection = (nn.Sequential(nn.Linear(task_dim, cfg.task_input), nn.LayerNorm(cfg.task_input),
                                              nn.SiLU(), nn.Dropout(cfg.dropout)) if cfg.task_input else nn.Identity())
        self.task_experts = TaskBank(n_tasks, cfg.task_input or task_dim, cfg.task_hidden, cfg.width, cfg.dropout)
        n_options = 1 + len(self.expert_names)
        if cfg.gate_input == "experts":
            self.gate_norm = nn.LayerNorm(cfg.width)
            self.gate_query = nn.Parameter(0.02 * torch.randn(n_tasks, cfg.width))
            self.gate = None
        else:
            self.gate = nn.Parameter(torch.zeros(spec.input_width, n_tasks * n_options))
            nn.init.normal_(self.gate, std=spec.input_width ** -0.5)
        self.gate_bias = nn.Parameter(torch.zeros(n_tasks * n_options))
        self.shared_gate = nn.Linear(spec.input_width, n_tasks + len(self.expert_names)) if cfg.extra_layers else None
        self.layers = nn.ModuleList(ExtractionLayer(n_tasks, cfg, last=i == cfg.extra_layers - 1)
                                    for i in range(cfg.extra_layers))
        self.towers = Towers(spec, cfg)

    @property
    def gate_names(self) -> tuple[str, ...]:
        return ("task", *self.expert_names)

    def route(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return x.index_select(1, getattr(self, f"route_{name}"))

    def gate_logits(self, x: torch.Tensor, private: torch.Tensor, shared: torch.Tensor) -> torch.Tensor:
        """``[B, T, 1 + S]``. Over the experts' outputs, each task scores every expert by how well the
        expert's representation of this customer matches the task's query (scaled dot product), so the
        gate reads what the experts learned rather than a linear map of 1,500 raw columns."""
        bias = self.gate_bias.view(len(self.spec.tasks), -1)
        if self.gate is not None:
            return (x @ self.gate).view(len(x), len(self.spec.tasks), -1) + bias
        scale = self.cfg.width ** -0.5
        own = (self.gate_norm(private) * self.gate_query).sum(-1, keepdim=True)          # [B, T, 1]
        others = torch.einsum("bsw,tw->bts", self.gate_norm(shared), self.gate_query)   # [B, T, S]
        return scale * torch.cat([own, others], dim=-1) + bias

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor] | None = None) -> TeacherOutput:
        side = side or {}
        x = self.inputs(x)
        shared = torch.stack([self.experts[e](self.route(x, e), side).float() for e in self.expert_names], dim=1)
        private = self.task_experts(self.task_projection(self.route(x, TASK_EXPERT))).float()   # [B, T, W]
        gates = gate_weights(self.gate_logits(x, private, shared), self.cfg.gate)             # [B, T, 1 + S]
        streams = gates[..., :1] * private + mix(gates[..., 1:], shared)                      # [B, T, W]
        if self.layers:
            everything = torch.cat([private, shared], dim=1)
            shared_stream = mix(torch.softmax(self.shared_gate(x).float(), -1).unsqueeze(1), everything)[:, 0]
            for layer in self.layers:
                streams, shared_stream = layer(streams, shared_stream)
        reg = sum((self.experts[e].regularizer() for e in self.expert_names), x.new_zeros((), dtype=torch.float32))
        return TeacherOutput(self.towers(streams), gates, reg)


class ExtractionLayer(nn.Module):
    """A homogeneous PLE level: private MLP per task stream, shared MLPs on the shared stream."""

    def __init__(self, n_tasks: int, cfg: ModelConfig, last: bool):
        super().__init__()
        w, k = cfg.width, cfg.extra_shared_experts
        self.private = TaskBank(n_tasks, w, cfg.task_hidden, w, cfg.dropout)
        self.shared = TaskBank(k, w, cfg.task_hidden, w, cfg.dropout)
        self.gates = TaskBank(n_tasks, w, w, 1 + k, 0.0)
        self.shared_gate = None if last else nn.Linear(w, n_tasks + k)
        self.gate_kind = cfg.gate

    def forward(self, streams: torch.Tensor, shared_stream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        private = self.private(streams)                                             # [B, T, W]
        shared = self.shared(shared_stream)                                         # [B, K, W]
        g = gate_weights(self.gates(streams), self.gate_kind)                       # [B, T, 1 + K]
        out = g[..., :1] * private + mix(g[..., 1:], shared)
        if self.shared_gate is None:
            return out, shared_stream
        s = torch.softmax(self.shared_gate(shared_stream).float(), -1).unsqueeze(1)
        return out, mix(s, torch.cat([private, shared], dim=1))[:, 0]


class MMoE(nn.Module):
    """Multi-gate mixture of homogeneous MLP experts over the full input (Ma et al. 2018)."""

    def __init__(self, spec: ModelSpec, cfg: ModelConfig | None = None):
        super().__init__()
        self.spec, self.cfg = spec, cfg or ModelConfig(architecture="mmoe")
        cfg, n = self.cfg, len(spec.tasks)
        self.inputs = InputLayer(spec.n_features, spec.codes)
        self.experts = TaskBank(cfg.mmoe_experts, spec.input_width, cfg.bottom_hidden[-1], cfg.width, cfg.dropout)
        self.gate = nn.Linear(spec.input_width, n * cfg.mmoe_experts)
        self.towers = Towers(spec, cfg)

    @property
    def gate_names(self) -> tuple[str, ...]:
        return tuple(f"mlp_{i}" for i in range(self.cfg.mmoe_experts))

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor] | None = None) -> TeacherOutput:
        x = self.inputs(x)
        experts = self.experts(x).float()                                           # [B, E, W]
        gates = torch.softmax(self.gate(x).float().view(len(x), len(self.spec.tasks), -1), -1)
        return TeacherOutput(self.towers(mix(gates, experts)), gates, x.new_zeros((), dtype=torch.float32))


class SharedBottom(nn.Module):
    """One MLP bottom shared by every task, then the task towers (the classic MTL baseline)."""

    def __init__(self, spec: ModelSpec, cfg: ModelConfig | None = None):
        super().__init__()
        self.spec, self.cfg = spec, cfg or ModelConfig(architecture="shared_bottom")
        self.inputs = InputLayer(spec.n_features, spec.codes)
        self.bottom = mlp([spec.input_width, *self.cfg.bottom_hidden, self.cfg.width], self.cfg.dropout)
        self.towers = Towers(spec, self.cfg)
        self.gate_names: tuple[str, ...] = ()

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor] | None = None) -> TeacherOutput:
        h = nn.functional.silu(self.bottom(self.inputs(x))).float()
        streams = h.unsqueeze(1).expand(-1, len(self.spec.tasks), -1)
        return TeacherOutput(self.towers(streams), None, x.new_zeros((), dtype=torch.float32))


def build_model(spec: ModelSpec, cfg: ModelConfig) -> nn.Module:
    return {"ple": PLE, "mmoe": MMoE, "shared_bottom": SharedBottom}[cfg.architecture](spec, cfg)
