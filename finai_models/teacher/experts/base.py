"""The contract every layer-0 expert of the PLE teacher follows.

An expert reads only its routed columns of the feature matrix (the FeatureRouter of the original,
B §2.2) and, where it has them, side tensors: the customer's monthly sequence, persistence
diagrams. It returns one vector of the common width, so the gates can mix experts as one
``[batch, experts, width]`` tensor. ``ExpertInput`` says what the routed slice holds, so an expert
can find its fields (DeepFM: one field per feature group) without knowing the global schema.
Side tensors are optional: without them an expert runs its documented dense variant.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

# Keys of the side-tensor mapping passed to every expert's forward.
SEQUENCE = "sequence"            # float [B, L, F], oldest month first, zeros where absent
SEQUENCE_MASK = "sequence_mask"  # bool  [B, L], True where the customer existed that month
DIAGRAMS = "diagrams"            # float [B, H, P, 2] (birth, death) pairs per diagram, zero padded
DIAGRAM_MASK = "diagram_mask"    # bool  [B, H, P], True for a real pair


@dataclass(frozen=True)
class Field:
    """One feature group inside an expert's routed slice: columns ``start:end`` (log copies included)."""

    group: str
    start: int
    end: int
    columns: tuple[str, ...] = ()

    @property
    def dim(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class ExpertInput:
    """What an expert reads. ``fields`` tile ``0:dim`` of the routed slice in order."""

    dim: int
    fields: tuple[Field, ...]
    sequence_shape: tuple[int, int] | None = None   # (L, F), None: no sequence -> dense variant
    diagram_shape: tuple[int, int] | None = None    # (H, P), None: no diagrams -> dense variant
    extras: Mapping[str, object] = field(default_factory=dict)  # static side data (graphs, item tables)

    def field(self, group: str) -> Field | None:
        return next((f for f in self.fields if f.group == group), None)


class Expert(nn.Module):
    """Base class: ``forward(x, side) -> [B, width]``; ``regularizer()`` adds to the training loss."""

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()   # side keys the full (non-dense) variant reads

    def __init__(self, spec: ExpertInput, width: int):
        super().__init__()
        if spec.dim <= 0:
            raise ValueError(f"expert {self.name} has no routed input columns")
        self.spec = spec
        self.width = width

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def regularizer(self) -> torch.Tensor:
        """An auxiliary loss (e.g. NOTEARS' DAG penalty); zero for most experts."""
        return next(self.parameters()).new_zeros(())


def mlp(sizes: list[int], dropout: float = 0.0, norm: bool = True) -> nn.Sequential:
    """Linear → LayerNorm → SiLU (→ Dropout) for every hidden size; the last Linear is bare."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            if norm:
                layers.append(nn.LayerNorm(b))
            layers.append(nn.SiLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
