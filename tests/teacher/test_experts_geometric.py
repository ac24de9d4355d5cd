"""Geometric experts: Poincaré-ball operations, HGCN over the MCC tree, PersLay over persistence diagrams."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from finai_models.config import load_settings
from finai_models.teacher.experts.base import DIAGRAM_MASK, DIAGRAMS, ExpertInput, Field
from finai_models.teacher.experts.hyperbolic import (
    HGCN,
    HGCNLayer,
    MobiusLayer,
    distance,
    expmap0,
    logmap0,
    mcc_hierarchy_graph,
    mobius_add,
    mobius_matvec,
)
from finai_models.teacher.experts.perslay import PersLay, perslay_vectorize

C = (0.5, 1.0, 2.0)
WIDTH = 64


@pytest.fixture(scope="module")
def mcc():
    return load_settings().mcc


def hgcn_fields(mcc, extra: tuple[str, ...] = ()) -> tuple[Field, ...]:
    """merchant_hierarchy (27 columns + 2 log copies), then mcc_top30_multihot (30 codes, the OOV count
    and its log copy, then ``extra``): 61 columns without extras."""
    merchant = [f"merchant_hierarchy_{i:02d}" for i in range(27)] + ["merchant_hierarchy_recency_log",
                                                                     "merchant_hierarchy_amount_gini_log"]
    top30 = [*(f"mcc_{c}" for c in mcc.codes[:30]), "mcc_other_count", "mcc_other_count_log", *extra]
    return (Field("merchant_hierarchy", 0, len(merchant), tuple(merchant)),
            Field("mcc_top30_multihot", len(merchant), len(merchant) + len(top30), tuple(top30)))


def hgcn_spec(mcc) -> ExpertInput:
    fields = hgcn_fields(mcc)
    return ExpertInput(fields[-1].end, fields, extras={"hierarchy": mcc_hierarchy_graph(mcc, fields)})


def perslay_spec(dim: int = 41, diagrams: tuple[int, int] | None = (4, 16)) -> ExpertInput:
    return ExpertInput(dim, (Field("tda", 0, dim),), diagram_shape=diagrams)


def random_diagrams(b: int, h: int, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    birth = torch.rand(b, h, p)
    diagrams = torch.stack([birth, birth + torch.rand(b, h, p)], dim=-1)
    mask = torch.rand(b, h, p) < 0.7
    return diagrams * mask[..., None], mask


# --- Poincaré ball --------------------------------------------------------------------------------
@pytest.mark.parametrize("c", C)
def test_ball_known_answers(c):
    torch.manual_seed(0)
    v = 0.5 * torch.randn(8, 5, dtype=torch.float64)
    x = expmap0(v, c)
    torch.testing.assert_close(logmap0(x, c), v)
    torch.testing.assert_close(mobius_add(x, torch.zeros_like(x), c), x)
    torch.testing.assert_close(mobius_add(-x, x, c), torch.zeros_like(x))
    expected = 2 / math.sqrt(c) * torch.atanh(math.sqrt(c) * x.norm(dim=-1))
    torch.testing.assert_close(distance(torch.zeros_like(x), x, c), expected)
    torch.testing.assert_close(mobius_matvec(torch.eye(5, dtype=torch.float64), x, c), x)


@pytest.mark.parametrize("c", C)
def test_huge_tangent_vectors_stay_inside(c):
    torch.manual_seed(1)
    for dtype in (torch.float32, torch.float64):
        x = expmap0(1e6 * torch.randn(4, 3, dtype=dtype), c)
        assert torch.isfinite(x).all()
        assert (x.norm(dim=-1) < 1 / math.sqrt(c)).all()
        assert torch.isfinite(logmap0(x, c)).all()
        assert torch.isfinite(distance(x, -x, c)).all()


def test_hgcn_layer_with_identity_adjacency_is_mobius_layer():
    torch.manual_seed(2)
    layer, mobius = HGCNLayer(6, 4, 1.5), MobiusLayer(6, 4, 1.5)
    mobius.linear.load_state_dict(layer.linear.state_dict())
    h = expmap0(torch.randn(3, 7, 6), 1.5)
    torch.testing.assert_close(layer(h, torch.eye(7)), mobius(h))


# --- MCC tree -------------------------------------------------------------------------------------
def test_mcc_hierarchy_graph(mcc):
    fields = hgcn_fields(mcc, extra=(f"mcc_{mcc.codes[0]}_log",))
    graph = mcc_hierarchy_graph(mcc, fields)
    n1, n2, codes = len(mcc.l1_names), len(mcc.l2_names), 30
    n = 1 + n1 + n2 + codes
    assert len(graph.node_names) == n and graph.adjacency.shape == (n, n)
    np.testing.assert_allclose(graph.adjacency.sum(1), 1, rtol=1e-6)
    code_l2 = dict(zip(mcc.codes, mcc.code_l2, strict=True))
    mcc_field = fields[1]
    for k, code in enumerate(mcc.codes[:codes]):
        node = 1 + n1 + n2 + k
        parent = 1 + n1 + code_l2[code]
        assert graph.node_names[node] == f"mcc:{code}"
        assert graph.adjacency[node, parent] > 0 and graph.adjacency[parent, node] > 0
        assert mcc_field.columns[graph.leaf_column[node] - mcc_field.start] == f"mcc_{code}"
    assert (graph.leaf_column[:1 + n1 + n2] == -1).all()
    for l2, l1 in enumerate(mcc.l2_to_l1):
        assert graph.adjacency[1 + n1 + l2, 1 + l1] > 0
    assert (graph.adjacency[0, 1:1 + n1] > 0).all()
    assert graph.init_tangent.shape == (n, 2) and np.isfinite(graph.init_tangent).all()
    assert mcc_hierarchy_graph(mcc, fields[:1]) is None
    unknown = mcc_hierarchy_graph(mcc, hgcn_fields(mcc, extra=("mcc_1",)))   # no such code in the tree
    assert unknown.node_names[-1] == "mcc:1" and unknown.adjacency[-1, 0] > 0


# --- HGCN -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dense", [False, True])
def test_hgcn_shapes_batch_of_one_and_bf16(mcc, dense):
    torch.manual_seed(3)
    spec = hgcn_spec(mcc)
    if dense:
        spec = ExpertInput(spec.dim, spec.fields)
    expert = HGCN(spec, WIDTH)
    x = torch.randn(5, spec.dim)
    out = expert(x, {})
    assert out.shape == (5, WIDTH) and torch.isfinite(out).all() and out.abs().sum() > 0
    assert expert(x[:1], {}).shape == (1, WIDTH)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(expert(100 * x, {}).float()).all()


def test_hgcn_leaf_signal_changes_output(mcc):
    torch.manual_seed(4)
    spec = hgcn_spec(mcc)
    expert = HGCN(spec, WIDTH).eval()
    graph = spec.extras["hierarchy"]
    column = int(graph.leaf_column[graph.leaf_column >= 0][5])
    x = torch.randn(2, spec.dim)
    changed = x.clone()
    changed[0, column] += 2.0
    before, after = expert(x, {}), expert(changed, {})
    assert not torch.allclose(before[0], after[0])
    torch.testing.assert_close(before[1], after[1])


# --- PersLay --------------------------------------------------------------------------------------
def test_perslay_permutation_and_padding_invariance():
    torch.manual_seed(5)
    expert = PersLay(perslay_spec(), WIDTH).eval()
    x = torch.randn(3, 41)
    diagrams, mask = random_diagrams(3, 4, 16)
    out = expert(x, {DIAGRAMS: diagrams, DIAGRAM_MASK: mask})
    perm = torch.randperm(16)
    shuffled = expert(x, {DIAGRAMS: diagrams[:, :, perm], DIAGRAM_MASK: mask[:, :, perm]})
    torch.testing.assert_close(shuffled, out)
    garbage = torch.where(mask[..., None], diagrams, 10 * torch.randn_like(diagrams))
    torch.testing.assert_close(expert(x, {DIAGRAMS: garbage, DIAGRAM_MASK: mask}), out)


def test_perslay_gaussian_closed_form():
    torch.manual_seed(6)
    birth, death, sigma = 0.3, 1.1, 0.4
    diagrams = torch.zeros(1, 2, 3, 2)
    diagrams[0, 1, 2] = torch.tensor([birth, death])
    mask = torch.zeros(1, 2, 3, dtype=torch.bool)
    mask[0, 1, 2] = True
    centres = torch.rand(2, 5, 2)
    vec = perslay_vectorize(diagrams, mask, centres, torch.full((2, 5), sigma))
    c = centres[1]
    expected = torch.exp(-((birth - c[:, 0]) ** 2 + (death - birth - c[:, 1]) ** 2) / (2 * sigma ** 2))
    torch.testing.assert_close(vec[0, 1], torch.cat([expected, expected]))
    torch.testing.assert_close(vec[0, 0], torch.zeros(10))


@pytest.mark.parametrize("phi", ["gaussian", "rational_hat"])
def test_perslay_empty_diagrams_batch_of_one_and_bf16(phi):
    torch.manual_seed(7)
    expert = PersLay(perslay_spec(), WIDTH, phi=phi)
    x = torch.randn(1, 41)
    empty = {DIAGRAMS: torch.zeros(1, 4, 16, 2), DIAGRAM_MASK: torch.zeros(1, 4, 16, dtype=torch.bool)}
    out = expert(x, empty)
    assert out.shape == (1, WIDTH) and torch.isfinite(out).all() and out.abs().sum() > 0
    diagrams, mask = random_diagrams(4, 4, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(expert(torch.randn(4, 41), {DIAGRAMS: diagrams, DIAGRAM_MASK: mask}).float()).all()
    with pytest.raises(KeyError):
        expert(x, {})


def test_perslay_dense_variant():
    torch.manual_seed(8)
    expert = PersLay(perslay_spec(diagrams=None), WIDTH)
    out = expert(torch.randn(2, 41), {})
    assert out.shape == (2, WIDTH) and torch.isfinite(out).all() and out.abs().sum() > 0


# --- gradients ------------------------------------------------------------------------------------
def _assert_all_parameters_learn(expert: torch.nn.Module, out: torch.Tensor) -> None:
    out.sum().backward()
    for name, param in expert.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_every_parameter_gets_a_gradient(mcc):
    torch.manual_seed(9)
    spec = hgcn_spec(mcc)
    for expert_spec in (spec, ExpertInput(spec.dim, spec.fields)):
        hgcn = HGCN(expert_spec, WIDTH)
        _assert_all_parameters_learn(hgcn, hgcn(torch.randn(6, spec.dim), {}))
    for phi in ("gaussian", "rational_hat"):
        perslay = PersLay(perslay_spec(), WIDTH, phi=phi)
        diagrams, mask = random_diagrams(6, 4, 16)
        _assert_all_parameters_learn(perslay, perslay(torch.randn(6, 41), {DIAGRAMS: diagrams, DIAGRAM_MASK: mask}))
