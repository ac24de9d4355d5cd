"""The teacher's losses and loss combiners, against hand-computed values and the original system's flaws."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from finai_models.teacher.losses import (
    AdaTT,
    FixedWeighting,
    GradSurgery,
    UncertaintyWeighting,
    groups_of,
    project_conflicts,
    task_loss,
    task_losses,
)
from finai_models.teacher.tasks import TaskSpec

BINARY = TaskSpec("churn", "binary")
FOCAL = TaskSpec("fraud", "binary", loss="focal", focal_alpha=0.25, focal_gamma=2.0)
MULTI = TaskSpec("segment", "multiclass", classes=3)
HUBER = TaskSpec("balance", "regression")
MSE = TaskSpec("spend", "regression", loss="mse")


def _sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


# ---------------------------------------------------------------- task_loss: values


def test_bce_matches_hand_computation():
    torch.manual_seed(0)
    loss, n = task_loss(BINARY, torch.tensor([[0.5], [-1.0]]), torch.tensor([1.0, 0.0]))
    expected = (-math.log(_sig(0.5)) - math.log(1 - _sig(-1.0))) / 2
    assert n == 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_focal_with_gamma_zero_is_alpha_weighted_bce():
    torch.manual_seed(0)
    spec = dataclasses.replace(FOCAL, focal_gamma=0.0)
    logits, target = torch.tensor([[0.5], [-1.0]]), torch.tensor([1.0, 0.0])
    loss, _ = task_loss(spec, logits, target)
    expected = (0.25 * -math.log(_sig(0.5)) + 0.75 * -math.log(1 - _sig(-1.0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_focal_matches_hand_computation_and_is_not_bypassed():
    torch.manual_seed(0)
    logits, target = torch.tensor([[2.0], [0.3]]), torch.tensor([1.0, 0.0])
    loss, _ = task_loss(FOCAL, logits, target)
    p0, p1 = _sig(2.0), _sig(0.3)
    expected = (0.25 * (1 - p0) ** 2 * -math.log(p0) + 0.75 * p1**2 * -math.log(1 - p1)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    bce, _ = task_loss(BINARY, logits, target)
    assert not torch.isclose(loss, bce)


def test_focal_is_stable_for_saturated_logits():
    torch.manual_seed(0)
    logits = torch.tensor([[200.0], [-200.0], [200.0]], requires_grad=True)
    loss, _ = task_loss(FOCAL, logits, torch.tensor([1.0, 0.0, 0.0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert loss.item() == pytest.approx(0.75 * 200.0 / 3, rel=1e-4)  # the confidently wrong row dominates


def test_ce_reads_raw_logits_not_sigmoid_outputs():
    torch.manual_seed(0)
    logits, target = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]), torch.tensor([0.0, 2.0])
    loss, n = task_loss(MULTI, logits, target)
    expected = -(torch.log_softmax(logits, dim=1)[[0, 1], [0, 2]]).mean()
    assert n == 2
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    on_sigmoid = F.cross_entropy(torch.sigmoid(logits), target.long())  # the original system's flaw
    assert abs(loss.item() - on_sigmoid.item()) > 1e-2


def test_huber_and_mse_match_hand_computation():
    torch.manual_seed(0)
    logits, target = torch.tensor([[0.5], [3.0]]), torch.tensor([0.0, 0.0])
    huber, _ = task_loss(HUBER, logits, target)
    mse, _ = task_loss(MSE, logits, target)
    assert huber.item() == pytest.approx((0.5 * 0.25 + (3.0 - 0.5)) / 2)
    assert mse.item() == pytest.approx((0.25 + 9.0) / 2)


def test_loss_is_float32_for_half_precision_logits():
    torch.manual_seed(0)
    loss, _ = task_loss(MULTI, torch.randn(4, 3, dtype=torch.bfloat16), torch.tensor([0.0, 1.0, 2.0, 1.0]))
    assert loss.dtype == torch.float32


# ---------------------------------------------------------------- task_loss: missing labels


@pytest.mark.parametrize("spec", [BINARY, FOCAL, MULTI, HUBER, MSE], ids=lambda s: s.loss)
def test_nan_labels_are_masked(spec):
    torch.manual_seed(0)
    logits = torch.randn(5, spec.out_dim, requires_grad=True)
    target = torch.tensor([1.0, float("nan"), 0.0, float("nan"), 2.0 if spec.kind != "binary" else 1.0])
    keep = ~torch.isnan(target)
    loss, n = task_loss(spec, logits, target)
    alone, m = task_loss(spec, logits[keep], target[keep])
    assert (n, m) == (3, 3)
    assert loss.item() == pytest.approx(alone.item(), rel=1e-6)
    loss.backward()
    assert torch.all(logits.grad[~keep] == 0) and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("spec", [BINARY, FOCAL, MULTI, HUBER], ids=lambda s: s.loss)
def test_all_missing_gives_connected_zero(spec):
    torch.manual_seed(0)
    logits = torch.randn(3, spec.out_dim, requires_grad=True)
    loss, n = task_loss(spec, logits, torch.full((3,), float("nan")))
    assert n == 0 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(logits.grad == 0)


# ---------------------------------------------------------------- task_loss: validation


@pytest.mark.parametrize(("spec", "logits", "target", "problem"), [
    (BINARY, torch.zeros(3, 1), torch.zeros(3, 1), "target must be"),
    (BINARY, torch.zeros(3, 1), torch.zeros(4), "target must be"),
    (BINARY, torch.zeros(3), torch.zeros(3), "logits must be"),
    (MULTI, torch.zeros(3, 2), torch.zeros(3), "logits must be"),
    (HUBER, torch.zeros(3, 2), torch.zeros(3), "logits must be"),
    (MULTI, torch.zeros(3, 3), torch.tensor([0.0, 3.0, 1.0]), "class labels"),
    (MULTI, torch.zeros(3, 3), torch.tensor([0.0, -1.0, 1.0]), "class labels"),
    (MULTI, torch.zeros(3, 3), torch.tensor([0.0, 1.5, 1.0]), "class labels"),
    (BINARY, torch.zeros(2, 1), torch.tensor([0.0, 2.0]), "binary labels"),
])
def test_bad_inputs_raise_naming_the_task(spec, logits, target, problem):
    torch.manual_seed(0)
    with pytest.raises(ValueError, match=rf"task '{spec.name}'.*{problem}"):
        task_loss(spec, logits, target)


# ---------------------------------------------------------------- uncertainty weighting

SPECS = (dataclasses.replace(BINARY, weight=1.0), dataclasses.replace(HUBER, weight=3.0))
ALL = torch.tensor([True, True])


def test_uw_at_zero_is_half_the_weighted_sum():
    torch.manual_seed(0)
    losses = torch.tensor([0.8, 2.0])
    total = UncertaintyWeighting(SPECS)(losses, ALL)
    assert total.item() == pytest.approx(0.5 * (1.0 * 0.8 + 3.0 * 2.0))


def test_uw_gradient_wrt_log_variance():
    torch.manual_seed(0)
    uw = UncertaintyWeighting(SPECS)
    with torch.no_grad():
        uw.log_vars.copy_(torch.tensor([0.3, -0.7]))
    losses = torch.tensor([2.0, 0.5])
    uw(losses, ALL).backward()
    s, w = torch.tensor([0.3, -0.7]), torch.tensor([1.0, 3.0])
    torch.testing.assert_close(uw.log_vars.grad, 0.5 * w * (1 - torch.exp(-s) * losses))


def test_uw_descent_raises_s_for_large_losses_and_lowers_it_for_small():
    torch.manual_seed(0)
    uw = UncertaintyWeighting(SPECS)
    opt = torch.optim.SGD(uw.parameters(), lr=0.1)
    uw(torch.tensor([10.0, 0.01]), ALL).backward()
    opt.step()
    assert uw.log_vars[0] > 0 > uw.log_vars[1]
    assert uw.weights()[0] < 0.5 < uw.weights()[1]


def test_uw_applies_the_task_weight_exactly_once():
    torch.manual_seed(0)
    losses = torch.tensor([1.7])
    terms = []
    for weight in (1.0, 2.0):
        uw = UncertaintyWeighting([dataclasses.replace(BINARY, weight=weight)])
        with torch.no_grad():
            uw.log_vars.fill_(0.4)  # s != 0, so both the data term and the regulariser count
        terms.append(uw(losses, torch.tensor([True])).item())
    assert terms[0] == pytest.approx(1.0 * (0.5 * math.exp(-0.4) * 1.7 + 0.5 * 0.4))
    assert terms[1] == pytest.approx(2 * terms[0])


def test_uw_ignores_unobserved_tasks():
    torch.manual_seed(0)
    uw = UncertaintyWeighting(SPECS)
    total = uw(torch.tensor([1.0, float("nan")]), torch.tensor([True, False]))
    total.backward()
    assert total.item() == pytest.approx(0.5)
    assert uw.log_vars.grad[1] == 0 and torch.isfinite(uw.log_vars.grad).all()


def test_uw_clamp_lets_s_return_but_not_leave():
    torch.manual_seed(0)
    uw = UncertaintyWeighting(SPECS[:1])
    with torch.no_grad():
        uw.log_vars.fill_(5.0)
    torch.testing.assert_close(uw.weights(), torch.tensor([0.5 * math.exp(-4.0)]))
    uw(torch.tensor([1.0]), torch.tensor([True])).backward()  # descent lowers s: back towards the range
    assert uw.log_vars.grad[0] == pytest.approx(0.5 * (1 - math.exp(-4.0)))
    uw.log_vars.grad = None
    uw(torch.tensor([1000.0]), torch.tensor([True])).backward()  # descent would push s further out
    assert uw.log_vars.grad[0] == 0


def test_fixed_weighting_is_the_weighted_sum_of_observed_losses():
    torch.manual_seed(0)
    fixed = FixedWeighting(SPECS)
    assert fixed(torch.tensor([0.8, 2.0]), ALL).item() == pytest.approx(0.8 + 6.0)
    assert fixed(torch.tensor([0.8, float("nan")]), torch.tensor([True, False])).item() == pytest.approx(0.8)
    torch.testing.assert_close(fixed.weights(), torch.tensor([1.0, 3.0]))


# ---------------------------------------------------------------- AdaTT


def _two_task_losses(c2: list[float]):
    """L_i = ‖θ − c_i‖² on a shared θ = (1, 1): gradients 2(θ − c_i)."""
    theta = nn.Parameter(torch.ones(2))
    losses = torch.stack([((theta - torch.zeros(2)) ** 2).sum(), ((theta - torch.tensor(c2)) ** 2).sum()])
    return theta, losses


def test_adatt_is_identity_before_any_update():
    torch.manual_seed(0)
    losses = torch.rand(3)
    assert torch.equal(AdaTT(3).apply(losses), losses)


def test_adatt_transfers_between_aligned_tasks():
    torch.manual_seed(0)
    theta, losses = _two_task_losses([-1.0, -1.0])  # gradients (2, 2) and (4, 4): cosine 1
    adatt = AdaTT(2)
    adatt.update(losses, [theta], step=10)
    assert adatt.affinity[0, 1].item() == pytest.approx(0.1)  # EMA from zero with decay 0.9
    enhanced = adatt.apply(losses)
    expected = losses + torch.minimum(0.1 * losses.flip(0), 0.5 * losses)
    torch.testing.assert_close(enhanced, expected.detach())
    assert not torch.equal(enhanced, losses)
    enhanced.sum().backward()  # update() kept the graph
    assert theta.grad is not None


def test_adatt_does_not_transfer_between_opposing_tasks():
    torch.manual_seed(0)
    theta, losses = _two_task_losses([3.0, 3.0])  # gradients (2, 2) and (-4, -4): cosine −1
    adatt = AdaTT(2)
    adatt.update(losses, [theta], step=0)
    assert adatt.affinity[0, 1] < 0
    assert torch.equal(adatt.apply(losses), losses)


def test_adatt_masked_partners_get_exactly_zero_weight():
    torch.manual_seed(0)
    adatt = AdaTT(3)
    adatt.affinity = torch.tensor([[1.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 1.0]])
    weights = adatt.transfer_weights()
    # a zero affinity must not become a zero logit (which would still get softmax weight)
    torch.testing.assert_close(weights, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))


def test_adatt_caps_the_transfer_and_keeps_its_gradient():
    torch.manual_seed(0)
    adatt = AdaTT(2)
    adatt.affinity = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    losses = torch.tensor([0.01, 100.0], requires_grad=True)
    enhanced = adatt.apply(losses)
    assert enhanced[0].item() == pytest.approx(0.01 * 1.5)  # 0.1 · 100 capped at 0.5 · 0.01
    assert enhanced[1].item() == pytest.approx(100.0 + 0.001)
    enhanced[0].backward()
    assert losses.grad[1] > 0  # the partner's loss still trains the capped task


def test_adatt_respects_interval_and_round_trips_its_state():
    torch.manual_seed(0)
    theta, losses = _two_task_losses([-1.0, -1.0])
    adatt = AdaTT(2, interval=10)
    adatt.update(losses, [theta], step=3)
    assert adatt.updates == 0 and torch.all(adatt.affinity == 0)
    adatt.update(losses, [theta], step=20)
    restored = AdaTT(2, interval=10)
    restored.load_state_dict(adatt.state_dict())
    assert restored.updates == 1
    torch.testing.assert_close(restored.apply(losses.detach()), adatt.apply(losses.detach()))


# ---------------------------------------------------------------- gradient surgery


def _surgery_setup(u_b: list[float]):
    """Three tasks on one shared linear layer; group a = tasks 0, 1 and group b = task 2.

    Task t's loss is mean(shared(x) · u_t) · head, so group gradients are (Σ u_t) ⊗ mean(x) · head:
    their sign pattern, and so the conflict, is set by the u vectors.
    """
    shared = nn.Linear(3, 2, bias=False)
    head = nn.Parameter(torch.tensor(1.5))
    h = shared(torch.rand(8, 3) + 0.5)
    u = [torch.tensor([1.0, 0.5]), torch.tensor([0.5, 0.0]), torch.tensor(u_b)]
    losses = torch.stack([(h @ ut).mean() * head for ut in u])
    return shared, head, losses


def _group_grads(shared, losses):
    return [torch.autograd.grad(losses[m].sum(), shared.weight, retain_graph=True)[0].reshape(-1)
            for m in ([0, 1], [2])]


def test_project_conflicts_by_hand():
    torch.manual_seed(0)
    projected, n = project_conflicts(torch.tensor([[1.0, 0.0], [-1.0, 1.0]]))
    torch.testing.assert_close(projected, torch.tensor([[0.5, 0.5], [0.0, 1.0]]))
    assert n == 2


def test_surgery_projects_conflicting_groups():
    torch.manual_seed(0)
    shared, head, losses = _surgery_setup([-2.0, 0.5])
    g_a, g_b = _group_grads(shared, losses)
    assert g_a @ g_b < 0
    losses.sum().backward(retain_graph=True)
    plain, plain_head = shared.weight.grad.clone(), head.grad.clone()
    surgery = GradSurgery({"a": [0, 1], "b": [2]})
    assert surgery.apply(losses, [shared.weight], step=1)
    assert surgery.projections == 2
    assert not torch.allclose(shared.weight.grad, plain)
    p_a = g_a - (g_a @ g_b) / (g_b @ g_b) * g_b
    p_b = g_b - (g_b @ g_a) / (g_a @ g_a) * g_a
    assert p_a @ g_b >= -1e-5 and p_b @ g_a >= -1e-5
    torch.testing.assert_close(shared.weight.grad.reshape(-1), p_a + p_b)
    torch.testing.assert_close(head.grad, plain_head)  # not a shared parameter: untouched


def test_surgery_leaves_aligned_gradients_alone():
    torch.manual_seed(0)
    shared, _, losses = _surgery_setup([2.0, 0.5])
    g_a, g_b = _group_grads(shared, losses)
    losses.sum().backward(retain_graph=True)
    plain = shared.weight.grad.clone()
    surgery = GradSurgery({"a": [0, 1], "b": [2]})
    assert not surgery.apply(losses, [shared.weight], step=1)
    assert surgery.projections == 0
    torch.testing.assert_close(shared.weight.grad, plain)
    torch.testing.assert_close(plain.reshape(-1), g_a + g_b)


def test_surgery_runs_only_on_multiples_of_its_interval():
    torch.manual_seed(0)
    surgery = GradSurgery({"a": [0, 1], "b": [2]}, interval=3)
    ran = []
    for step in range(1, 7):
        shared, _, losses = _surgery_setup([-2.0, 0.5])
        losses.sum().backward(retain_graph=surgery.due(step))
        ran.append(surgery.apply(losses, [shared.weight], step=step))
    assert ran == [False, False, True, False, False, True]
    assert surgery.projections == 4
    assert GradSurgery({"a": [0], "b": [1]}, interval=1).due(1)


def test_surgery_is_reproducible_and_validates_groups():
    torch.manual_seed(0)
    grads = torch.randn(4, 6)
    first, _ = project_conflicts(grads, torch.Generator().manual_seed(7))
    again, _ = project_conflicts(grads, torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, again)
    _, _, losses = _surgery_setup([1.0, 1.0])
    with pytest.raises(ValueError, match="beyond"):
        GradSurgery({"a": [0], "b": [5]}).apply(losses, [], step=1)
    with pytest.raises(ValueError, match="non-empty"):
        GradSurgery({"a": []})


def test_groups_of_uses_the_task_group_or_the_task_itself():
    torch.manual_seed(0)
    specs = [dataclasses.replace(BINARY, group="binary"), dataclasses.replace(FOCAL, group="binary"), HUBER]
    assert groups_of(specs) == {"binary": [0, 1], "balance": [2]}


def test_prior_loss_is_the_loss_of_the_base_rate_so_scaled_tasks_start_at_one():
    from finai_models.teacher.losses import prior_losses

    specs = [TaskSpec("rare", "binary"), TaskSpec("mcc", "multiclass", classes=50), TaskSpec("amount", "regression")]
    rng = np.random.default_rng(0)
    y = {"rare": (rng.random(4000) < 0.02).astype(np.float32),
         "mcc": rng.integers(0, 50, 4000).astype(np.float32),
         "amount": rng.normal(3.0, 2.0, 4000).astype(np.float32)}
    y["rare"][:100] = np.nan
    scale = prior_losses(specs, y)
    p = np.nanmean(y["rare"])
    assert scale[0].item() == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)), rel=1e-3)
    assert scale[1].item() == pytest.approx(np.log(50), rel=0.02)        # uniform classes: ln K
    assert 1.0 < scale[2].item() < 2.0                                       # Huber of N(0, 2) around the median
    w = FixedWeighting(specs)
    w.set_scale(scale)
    at_prior = torch.stack([scale[i] for i in range(3)])
    assert w(at_prior, torch.ones(3, dtype=torch.bool)).item() == pytest.approx(3.0, rel=1e-5)


def test_kendall_weights_separate_tasks_with_unequal_noise():
    """Two regressions of the same signal, one with 10x the noise: the learned weights must part."""
    from finai_models.teacher.trainer import TrainConfig

    torch.manual_seed(0)
    specs = [TaskSpec("clean", "regression", loss="mse"), TaskSpec("noisy", "regression", loss="mse")]
    x = torch.randn(4096, 4)
    signal = x @ torch.tensor([1.0, -1.0, 0.5, 0.0])
    y = {"clean": signal + 0.1 * torch.randn(4096), "noisy": signal + 3.0 * torch.randn(4096)}
    heads = nn.Linear(4, 2)
    weighting = UncertaintyWeighting(specs)
    cfg = TrainConfig()
    opt = torch.optim.Adam([{"params": heads.parameters(), "lr": 0.02},
                            {"params": weighting.parameters(), "lr": cfg.uncertainty_lr}])
    for _ in range(400):
        rows = torch.randint(0, 4096, (256,))
        out = heads(x[rows])
        losses, observed = task_losses(specs, [out[:, :1], out[:, 1:]], {k: v[rows] for k, v in y.items()})
        opt.zero_grad()
        weighting(losses, observed).backward()
        opt.step()
    w = weighting.weights()
    assert w[0] > 10 * w[1], w        # the optimum is 1/(2 sigma^2): 50 vs 0.06
    assert weighting.log_vars[1] > 1.5 > -1.5 > weighting.log_vars[0]
