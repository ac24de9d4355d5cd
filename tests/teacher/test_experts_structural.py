"""Structural experts: NOTEARS causal SEM, Sinkhorn optimal transport, LightGCN propagation."""

from __future__ import annotations

import copy
import math

import numpy as np
import ot
import pytest
import torch

from finai_models.teacher.experts.base import ExpertInput, Field
from finai_models.teacher.experts.causal import Causal, notears_h
from finai_models.teacher.experts.lightgcn import LightGCN
from finai_models.teacher.experts.transport import OptimalTransport, sinkhorn_log

WIDTH = 16


def plain_spec(dim: int) -> ExpertInput:
    return ExpertInput(dim=dim, fields=(Field("numeric", 0, dim),))


def graph_spec(table: np.ndarray, other: int = 5) -> ExpertInput:
    """``other`` columns of another group, then a graph field of ``k`` embedding dims + norm + count."""
    k = table.shape[1]
    fields = (Field("profile", 0, other), Field("graph_collaborative", other, other + k + 2))
    return ExpertInput(dim=other + k + 2, fields=fields, extras={"item_embeddings": table})


def grads_of(module: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    return {n: p.grad for n, p in module.named_parameters()}


def experts() -> list[torch.nn.Module]:
    table = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    return [Causal(plain_spec(10), WIDTH), OptimalTransport(plain_spec(10), WIDTH),
            LightGCN(graph_spec(table), WIDTH), LightGCN(plain_spec(10), WIDTH)]


# ---- shared contract: shape, B=1, float32 and bfloat16 autocast --------------------------------

@pytest.mark.parametrize("index", range(4), ids=["causal", "transport", "lightgcn", "lightgcn-dense"])
def test_contract_shapes_finite_and_autocast(index):
    torch.manual_seed(0)
    expert = experts()[index]
    for batch in (1, 7):
        x = torch.randn(batch, expert.spec.dim)
        out = expert(x, {})
        assert out.shape == (batch, WIDTH) and out.dtype == torch.float32
        assert torch.isfinite(out).all() and out.abs().sum() > 0
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = expert(x, {})
            reg = expert.regularizer()
        assert low.shape == (batch, WIDTH) and torch.isfinite(low).all() and low.abs().sum() > 0
        assert torch.isfinite(reg)


# ---- causal ------------------------------------------------------------------------------------

def test_notears_h_is_zero_for_empty_and_acyclic_graphs():
    torch.manual_seed(0)
    assert notears_h(torch.zeros(5, 5)).item() == 0.0
    upper = torch.triu(torch.randn(5, 5), diagonal=1)
    assert abs(notears_h(upper).item()) < 1e-5


def test_notears_h_two_cycle_closed_form():
    a, b = 0.7, -1.3
    w = torch.tensor([[0.0, a], [b, 0.0]], dtype=torch.float64)
    # exp([[0, a^2], [b^2, 0]]) has trace 2 cosh(|a b|)
    assert notears_h(w).item() == pytest.approx(2 * math.cosh(a * b) - 2, rel=1e-9)


def test_causal_regularizer_reaches_w_and_compressor():
    torch.manual_seed(0)
    expert = Causal(plain_spec(10), WIDTH)
    expert(torch.randn(8, 10), {})
    expert.regularizer().backward()
    grads = grads_of(expert)
    assert grads["weight"] is not None and grads["weight"].abs().sum() > 0
    compressor = [g for n, g in grads.items() if n.startswith("compressor.")]
    assert compressor and all(g is not None and g.abs().sum() > 0 for g in compressor)
    # the diagonal is fixed at zero: no gradient reaches it
    assert torch.all(grads["weight"].diagonal() == 0)
    assert torch.all(expert.causal_graph().diagonal() == 0) and not expert.causal_graph().requires_grad
    # the latent is consumed: the module deep-copies again (EMA / best-checkpoint copies)
    copy.deepcopy(expert)
    assert expert.regularizer().item() == pytest.approx(expert.graph_penalty().item())


def test_causal_graph_recovers_a_linear_sem_instead_of_collapsing():
    torch.manual_seed(0)
    n = 1000
    z1 = torch.randn(n)
    z = torch.stack([z1, 1.5 * z1 + 0.5 * torch.randn(n), torch.randn(n)], dim=1)
    expert = Causal(plain_spec(4), WIDTH, latent=3)          # compressor bypassed: fit W on fixed z
    opt = torch.optim.Adam([expert.weight], lr=0.02)
    for _ in range(300):
        opt.zero_grad()
        expert.structure_loss(z).backward()
        opt.step()
    w = expert.adjacency().detach()
    assert w[0, 1].item() == pytest.approx(1.5, abs=0.2)
    others = w.clone()
    others[0, 1] = 0
    assert others.abs().max() < 0.15                        # reverse and unrelated edges stay small
    assert torch.linalg.norm(w) > 0.5
    assert notears_h(w).item() < 0.05


# ---- optimal transport -------------------------------------------------------------------------

def toy_problem(m: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a, b = rng.dirichlet(np.ones(m)), rng.dirichlet(np.ones(m))
    points = rng.normal(size=(m, 2))
    cost = ((points[:, None] - points[None]) ** 2).sum(-1)
    return a, b, cost / cost.max()


def test_sinkhorn_log_matches_pot():
    a, b, cost = toy_problem()
    expected = ot.sinkhorn2(a, b, cost, 0.1, method="sinkhorn_log", numItermax=2000, stopThr=1e-12)
    got, _ = sinkhorn_log(torch.from_numpy(a)[None], torch.from_numpy(b)[None], torch.from_numpy(cost), 0.1, 500)
    assert got.shape == (1, 1)
    assert got.item() == pytest.approx(float(expected), rel=1e-4)
    got32, _ = sinkhorn_log(torch.tensor(a[None], dtype=torch.float32), torch.tensor(b[None], dtype=torch.float32),
                            torch.tensor(cost, dtype=torch.float32), 0.1, 500)
    assert got32.dtype == torch.float32 and got32.item() == pytest.approx(float(expected), rel=1e-4)


def test_sinkhorn_small_eps_approaches_exact_ot_and_plan_has_the_marginals():
    a, b, cost = toy_problem(m=6, seed=1)
    exact = float(ot.emd2(a, b, cost))
    got, plan = sinkhorn_log(torch.from_numpy(a)[None], torch.from_numpy(b)[None], torch.from_numpy(cost), 0.01, 3000)
    assert got.item() == pytest.approx(exact, rel=0.02)
    np.testing.assert_allclose(plan[0, 0].sum(-1).numpy(), a, atol=1e-6)
    np.testing.assert_allclose(plan[0, 0].sum(-2).numpy(), b, atol=1e-9)


def test_sinkhorn_batches_every_pair_and_survives_an_unnormalised_cost():
    torch.manual_seed(0)
    a = torch.softmax(torch.randn(3, 8), -1)
    b = torch.softmax(torch.randn(4, 8), -1)
    points = torch.randn(8, 2)
    cost = 1e3 * (points[:, None] - points[None]).pow(2).sum(-1)
    assert (torch.exp(-cost / 0.01) == 0).sum() > 0            # the naive Gibbs kernel underflows here
    costs, plan = sinkhorn_log(a, b, cost, 0.01, 100)
    assert costs.shape == (3, 4) and plan.shape == (3, 4, 8, 8)
    assert torch.isfinite(costs).all() and torch.isfinite(plan).all()
    one, _ = sinkhorn_log(a[2:3], b[1:2], cost, 0.01, 100)     # batching computes each pair independently
    assert one.item() == pytest.approx(costs[2, 1].item(), rel=1e-5)


def test_sinkhorn_matrix_product_path_equals_the_logsumexp_path(monkeypatch):
    import finai_models.teacher.experts.transport as transport

    torch.manual_seed(0)
    a = torch.softmax(2 * torch.randn(64, 16), -1).requires_grad_()
    b = torch.softmax(torch.randn(8, 16), -1)
    e = torch.randn(16, 8)
    cost = (e[:, None] - e[None]).pow(2).sum(-1)
    cost = cost / cost.max()

    def run() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        costs, plan = sinkhorn_log(a, b, cost, 0.1, 10, 2)
        (grad,) = torch.autograd.grad(costs.sum(), a)
        return costs.detach(), plan.detach(), grad

    fast = run()                                               # the kernel is representable: GEMM path
    monkeypatch.setattr(transport, "GIBBS_LOG_FLOOR", float("inf"))
    reference = run()                                          # forced logsumexp path
    for got, want in zip(fast, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_transport_gradients_reach_prototypes_bins_and_projector():
    torch.manual_seed(0)
    expert = OptimalTransport(plain_spec(10), WIDTH)
    expert(torch.randn(5, 10), {}).pow(2).sum().backward()
    grads = grads_of(expert)
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    for name in ("prototype_logits", "bin_embeddings", "projector.0.weight", "projector.3.weight"):
        assert grads[name].abs().sum() > 0, name
    cost = expert.ground_cost()
    assert cost.max().item() == pytest.approx(1.0) and torch.all(cost.diagonal() == 0)


# ---- lightgcn ----------------------------------------------------------------------------------

def test_lightgcn_affinity_is_the_scaled_dot_product():
    torch.manual_seed(0)
    table = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    expert = LightGCN(graph_spec(table), WIDTH)
    x = torch.randn(3, expert.spec.dim)
    u = x[:, 5:9]                                            # the graph field's first k columns
    s = expert.affinity(expert.user(x))
    torch.testing.assert_close(s, u @ torch.from_numpy(table).t() / 2.0)


def test_lightgcn_attention_peaks_at_the_item_along_u():
    torch.manual_seed(0)
    table = 0.1 * np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    x = torch.zeros(1, 11)
    x[0, 5:9] = torch.tensor([2.0, -1.0, 0.5, 1.0])
    table[3] = 3.0 * x[0, 5:9].numpy()
    expert = LightGCN(graph_spec(table), WIDTH)
    attention = torch.softmax(expert.affinity(expert.user(x)), -1)
    assert attention.argmax().item() == 3 and attention[0, 3] > 0.9


def test_lightgcn_output_depends_on_the_item_table():
    torch.manual_seed(0)
    table = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    torch.manual_seed(0)
    first = LightGCN(graph_spec(table), WIDTH)
    torch.manual_seed(0)
    second = LightGCN(graph_spec(table * 2 + 1), WIDTH)     # same layer weights, other item table
    x = torch.randn(2, first.spec.dim)
    assert not torch.allclose(first(x, {}), second(x, {}))


@pytest.mark.parametrize("dense", [False, True])
def test_lightgcn_gradients_reach_the_table_and_every_layer(dense):
    torch.manual_seed(0)
    table = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    expert = LightGCN(plain_spec(10) if dense else graph_spec(table), WIDTH)
    assert expert.dense == dense
    if not dense:                                           # initialised from, not sharing, Phase 0's table
        torch.testing.assert_close(expert.items.detach(), torch.from_numpy(table))
        table[:] = 0
        assert expert.items.detach().abs().sum() > 0
    expert(torch.randn(4, expert.spec.dim), {}).pow(2).sum().backward()
    for name, grad in grads_of(expert).items():
        assert grad is not None and grad.abs().sum() > 0, name
    if dense:
        assert expert.items.shape == (32, 64)
        assert expert.items.detach().std().item() == pytest.approx(0.1, rel=0.1)
