"""PersLay (Carrière et al. 2020): a learned, permutation-invariant vectorisation of persistence diagrams.

Phase 0 summarises the customer's persistence diagrams by fixed statistics (counts, mean and
largest persistence, entropy); PersLay learns *which regions* of the (birth, persistence) plane
matter instead. Each pair p becomes w(p) φ(p): φ a learned point transformation (a Gaussian image
at Q learned centres, or rational hats), w a learned weight that can favour long bars (noise sits
near the diagonal). A masked sum and a masked max over the pairs make the result independent of
pair order and of padding; ρ, an MLP, reads the vectors of all H diagrams.

Diagram math runs in float32: the exponentials of a Gaussian image underflow early in bfloat16.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from finai_models.teacher.experts.base import DIAGRAM_MASK, DIAGRAMS, Expert, ExpertInput, mlp

Phi = Literal["gaussian", "rational_hat"]


def to_birth_persistence(diagrams: torch.Tensor) -> torch.Tensor:
    """(birth, death) [..., 2] -> (birth, death - birth): the diagonal becomes the axis persistence = 0."""
    return torch.stack([diagrams[..., 0], diagrams[..., 1] - diagrams[..., 0]], dim=-1)


def gaussian_image(points: torch.Tensor, centres: torch.Tensor, bandwidth: torch.Tensor) -> torch.Tensor:
    """exp(-|p - c_q|^2 / (2 σ_q^2)) [B, H, P, Q] of ``points`` [B, H, P, 2], ``centres`` [H, Q, 2],
    ``bandwidth`` [H, Q]."""
    sq = (points[:, :, :, None] - centres[None, :, None]).pow(2).sum(-1)
    return torch.exp(-sq / (2 * bandwidth[None, :, None].pow(2)))


def rational_hat(points: torch.Tensor, centres: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """1/(1 + |p - c_q|_1) - 1/(1 + |r_q - |p - c_q|_1|) [B, H, P, Q] (Hofer et al. 2019): a bump of
    radius r_q around each centre, with heavier tails than a Gaussian."""
    l1 = (points[:, :, :, None] - centres[None, :, None]).abs().sum(-1)
    return 1 / (1 + l1) - 1 / (1 + (radius[None, :, None].abs() - l1).abs())


def perslay_vectorize(diagrams: torch.Tensor, mask: torch.Tensor, centres: torch.Tensor, scale: torch.Tensor,
                      weight: torch.Tensor | None = None, phi: Phi = "gaussian") -> torch.Tensor:
    """One vector per diagram [B, H, 2Q]: masked sum then masked max over pairs of w(p) φ(p).

    ``diagrams`` [B, H, P, 2] (birth, death), ``mask`` [B, H, P] True for real pairs, ``centres``
    [H, Q, 2] in (birth, persistence) coordinates, ``scale`` [H, Q] the Gaussian bandwidth or the hat
    radius, ``weight`` [B, H, P] (None: 1). An empty diagram gives 0 (sum and max).
    """
    points = to_birth_persistence(diagrams.float())
    transform = gaussian_image if phi == "gaussian" else rational_hat
    values = transform(points, centres.float(), scale.float())                       # [B, H, P, Q]
    if weight is not None:
        values = values * weight.float()[..., None]
    real = mask[..., None]
    total = values.masked_fill(~real, 0.0).sum(2)
    largest = values.masked_fill(~real, float("-inf")).amax(2)
    return torch.cat([total, torch.where(real.any(2), largest, 0.0)], dim=-1)


class PersLay(Expert):
    """PersLay over the customer's persistence diagrams, plus an MLP over the routed flat TDA columns.

    Full variant (``spec.diagram_shape`` = (H, P)): per diagram h, learned centres [Q, 2] and
    bandwidths (or hat radii) and the weight w_h(p) = softplus(a_h · persistence + b_h), vectorised
    by ``perslay_vectorize`` into [H, 2Q]; ρ = MLP over the concatenation; its output is concatenated
    with the column MLP's -> Linear -> width. It needs ``side[DIAGRAMS]`` and ``side[DIAGRAM_MASK]``.

    Dense variant (``spec.diagram_shape`` None, e.g. no diagrams materialised): only the MLP over
    the routed columns -> Linear -> width.
    """

    name: ClassVar[str] = "perslay"
    needs: ClassVar[tuple[str, ...]] = (DIAGRAMS, DIAGRAM_MASK)

    def __init__(self, spec: ExpertInput, width: int, *, centres: int = 16, hidden: int = 64, phi: Phi = "gaussian",
                 init_scale: float = 0.25, dropout: float = 0.0):
        super().__init__(spec, width)
        self.phi = phi
        self.columns = mlp([spec.dim, hidden, hidden], dropout)
        self.full = spec.diagram_shape is not None
        if not self.full:
            self.head = nn.Linear(hidden, width)
            return
        n_diagrams = spec.diagram_shape[0]
        # Phase 0's point clouds span about one unit per coordinate, so births and persistences are O(1)
        self.centres = nn.Parameter(torch.rand(n_diagrams, centres, 2))
        self.log_scale = nn.Parameter(torch.full((n_diagrams, centres), float(init_scale)).log())
        self.weight_slope = nn.Parameter(torch.ones(n_diagrams))
        self.weight_bias = nn.Parameter(torch.zeros(n_diagrams))
        self.rho = mlp([n_diagrams * 2 * centres, hidden, hidden], dropout)
        self.head = nn.Linear(2 * hidden, width)

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor]) -> torch.Tensor:
        if not self.full:
            return self.head(self.columns(x))
        missing = [k for k in self.needs if k not in side]
        if missing:
            raise KeyError(f"expert {self.name} was built for diagrams but the batch lacks {missing}")
        with torch.autocast(x.device.type, enabled=False):
            vectors = self.vectorize(side[DIAGRAMS], side[DIAGRAM_MASK])
            rho = self.rho(vectors.flatten(1))
        return self.head(torch.cat([rho, self.columns(x)], dim=1))

    def vectorize(self, diagrams: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[B, H, 2Q] with this layer's learned centres, scales and weight function."""
        persistence = (diagrams[..., 1] - diagrams[..., 0]).float()
        weight = F.softplus(self.weight_slope[:, None] * persistence + self.weight_bias[:, None])
        return perslay_vectorize(diagrams, mask, self.centres, self.log_scale.exp(), weight, self.phi)
