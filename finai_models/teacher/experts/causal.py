"""NOTEARS causal expert: a linear structural equation model over a learned latent.

The routed columns are compressed to a small latent ``z`` (``d_z`` = 16), and a weighted
adjacency ``W`` (zero diagonal: no self-loops) explains every latent from the others,
``z_hat = z @ W`` (``W[i, j]`` is the edge ``z_i -> z_j``). The expert's output encodes ``z`` together
with its structural explanation ``z_hat``, so the gates see both what a customer is and what the
learned mechanism predicts they should be.

``regularizer()`` is the NOTEARS objective of Zheng et al. (2018) with a fixed penalty weight:

    dag_lambda * h(W) + sparsity_lambda * sum|W| + recon_lambda * relative_mse(z, z_hat),
    h(W) = tr(exp(W * W)) - d,

``h`` is 0 exactly when ``W`` is acyclic. The original expert had only the sparsity and DAG terms;
with nothing rewarding an edge, ``W = 0`` is a stationary point and ``W`` collapsed to ``|W| ~ 1e-4``,
so the "causal graph" was noise. The reconstruction term is what gives edges a reason to exist,
and the ``N(0, 0.1^2)`` initialisation starts ``W`` away from the zero saddle. The reconstruction
error is divided by the mean square of ``z``: the encoder layer-normalises right after its first
Linear, so the task barely cares about the scale of ``z``, and an absolute error would let the
compressor win the term by shrinking ``z`` towards 0 instead of by finding structure.

``dag_lambda`` defaults to 1, not the original 0.01: at 0.01 a two-cycle costs less than the
reconstruction it buys, and the learned graph keeps both directions of every strong dependence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from finai_models.teacher.experts.base import Expert, ExpertInput, mlp


def notears_h(w: torch.Tensor) -> torch.Tensor:
    """NOTEARS acyclicity ``tr(exp(W * W)) - d``: 0 iff ``W`` is a DAG, positive and smooth otherwise.

    Computed in (at least) float32 with autocast off: ``tr(exp(.))`` is ``d`` plus a small excess,
    and bfloat16's 8-bit mantissa rounds ``16 + 0.01`` back to 16, hiding weak cycles.
    """
    with torch.autocast(device_type=w.device.type, enabled=False):
        w = w.to(torch.promote_types(w.dtype, torch.float32))
        return torch.linalg.matrix_exp(w * w).diagonal(dim1=-2, dim2=-1).sum(-1) - w.shape[-1]


class Causal(Expert):
    """Compressor ``x -> z``, linear SEM ``z_hat = z @ (W * mask)``, encoder ``[z, z_hat] -> width``."""

    name: ClassVar[str] = "causal"

    def __init__(self, spec: ExpertInput, width: int, *, latent: int = 16, hidden: int = 64,
                 dropout: float = 0.0, w_init_scale: float = 0.1, dag_lambda: float = 1.0,
                 sparsity_lambda: float = 0.001, recon_lambda: float = 0.5):
        super().__init__(spec, width)
        self.compressor = mlp([spec.dim, hidden, latent], dropout)
        self.weight = nn.Parameter(torch.randn(latent, latent) * w_init_scale)
        self.register_buffer("mask", 1.0 - torch.eye(latent))
        self.encoder = mlp([2 * latent, hidden, width], dropout)
        self.dag_lambda, self.sparsity_lambda, self.recon_lambda = dag_lambda, sparsity_lambda, recon_lambda
        # Latent of the last forward with grad enabled, consumed by regularizer(). Not kept past it: a
        # non-leaf tensor on the module would make copy.deepcopy (EMA, best-checkpoint copies) fail.
        self._z: torch.Tensor | None = None

    def adjacency(self) -> torch.Tensor:
        """``W`` with its diagonal held at 0 (a variable cannot explain itself)."""
        return self.weight * self.mask

    def reconstruct(self, z: torch.Tensor) -> torch.Tensor:
        """The SEM's prediction of every latent from its parents, in float32."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            return z.float() @ self.adjacency().float()

    def forward(self, x: torch.Tensor, side: Mapping[str, torch.Tensor]) -> torch.Tensor:
        z = self.compressor(x).float()
        if torch.is_grad_enabled():
            self._z = z
        return self.encoder(torch.cat([z, self.reconstruct(z)], dim=-1))

    def graph_penalty(self) -> torch.Tensor:
        """``dag_lambda * h(W) + sparsity_lambda * sum|W|``, float32."""
        with torch.autocast(device_type=self.weight.device.type, enabled=False):
            w = self.adjacency().float()
            return self.dag_lambda * notears_h(w) + self.sparsity_lambda * w.abs().sum()

    def structure_loss(self, z: torch.Tensor) -> torch.Tensor:
        """The NOTEARS objective for latents ``z`` (see the module docstring); float32 throughout."""
        with torch.autocast(device_type=z.device.type, enabled=False):
            z = z.float()
            recon = (z - self.reconstruct(z)).pow(2).mean() / (z.pow(2).mean() + 1e-6)
            return self.graph_penalty() + self.recon_lambda * recon

    def regularizer(self) -> torch.Tensor:
        """NOTEARS loss on the last training forward's latents, which it consumes (call once per step).

        With no pending forward it returns the graph terms alone.
        """
        z, self._z = self._z, None
        return self.graph_penalty() if z is None else self.structure_loss(z)

    def causal_graph(self) -> torch.Tensor:
        """Edge strengths ``W * W`` (detached): the weighted DAG that explanations report."""
        w = self.adjacency().detach()
        return w * w
