"""The distillation objective, the fidelity metrics and routing, calibration, and the audit chain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finai_models.distill.fidelity import ece, fidelity, jsd, rank_corr, route
from finai_models.distill.objective import BlendedObjective, Targets
from finai_models.distill.students import fit_bias_correction, fit_platt
from finai_models.teacher.tasks import TaskSpec
from finai_serving.audit import AuditLog, AuditTampered
from finai_serving.student import calibrate

BINARY, MULTI, REG = TaskSpec("b", "binary"), TaskSpec("m", "multiclass", classes=4), TaskSpec("r", "regression")
THRESHOLDS = {"tier1": {"binary": {"max_auc_gap": 0.05, "max_ece": 0.05}, "multiclass": {"max_macro_f1_gap": 0.1},
                        "regression": {"max_mae_gap": 0.05, "max_rmse_gap": 0.1}},
              "tier2": {"binary": {"min_agreement": 0.85, "max_jsd": 0.1, "min_rank_corr": 0.9},
                        "multiclass": {"min_agreement": 0.7, "max_jsd": 0.1},
                        "regression": {"min_rank_corr": 0.9, "min_quartile_agreement": 0.7}}, "ece_bins": 10}


def _targets(kind: str, n: int = 64, seed: int = 0) -> Targets:
    rng = np.random.default_rng(seed)
    if kind == "multiclass":
        hard = rng.integers(0, 4, n).astype(float)
        soft = rng.normal(size=(n, 4))
    else:
        hard = (rng.random(n) < 0.3).astype(float) if kind == "binary" else rng.normal(size=n)
        soft = rng.normal(size=n)
    hard[:5] = np.nan   # missing hard labels: soft term only
    return Targets(hard, soft)


@pytest.mark.parametrize("kind", ["binary", "multiclass", "regression"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_gradient_is_the_derivative_of_the_blended_loss(kind, temperature):
    obj = BlendedObjective(kind, alpha=0.3, temperature=temperature)
    t = _targets(kind)
    raw = np.random.default_rng(1).normal(size=t.soft_logits.shape)
    _, hess = obj.gradients(raw, t)
    hard_grad = BlendedObjective(kind, 1.0, temperature).gradients(raw, t)[0]   # d(hard term)/d(raw), per row
    soft_grad = BlendedObjective(kind, 0.0, temperature).gradients(raw, t)[0]   # d(T² soft term)/d(raw)
    n, labelled = len(t.hard), (~np.isnan(t.hard)).sum()
    for row in (3, 10, 40):                       # row 3 has no hard label
        at = (row, 1) if kind == "multiclass" else (row,)
        up, down = raw.copy(), raw.copy()
        up[at] += 1e-5
        down[at] -= 1e-5
        numeric = (obj.loss(up, t) - obj.loss(down, t)) / 2e-5
        # loss() averages the hard term over labelled rows and the soft term over all rows
        assert numeric == pytest.approx(0.3 * hard_grad[at] / labelled + 0.7 * soft_grad[at] / n, rel=1e-4, abs=1e-9)
    assert (hess > 0).all()


def test_alpha_one_is_plain_logistic_regression_and_ignores_the_teacher():
    t = _targets("binary")
    raw = np.linspace(-2, 2, len(t.hard))
    g, _ = BlendedObjective("binary", alpha=1.0).gradients(raw, t)
    p = 1 / (1 + np.exp(-raw))
    seen = ~np.isnan(t.hard)
    np.testing.assert_allclose(g[seen], (p - t.hard)[seen])
    assert np.all(g[~seen] == 0)
    g2, _ = BlendedObjective("binary", alpha=1.0).gradients(raw, Targets(t.hard, -t.soft_logits))
    np.testing.assert_array_equal(g, g2)


def test_pure_soft_gradient_vanishes_at_the_teacher():
    t = _targets("binary")
    g, _ = BlendedObjective("binary", alpha=0.0).gradients(t.soft_logits.copy(), t)
    np.testing.assert_allclose(g, 0, atol=1e-12)


def test_ece_jsd_and_rank_correlation_known_answers():
    y = np.array([0, 0, 1, 1], float)
    assert ece(y, np.array([0.05, 0.05, 0.95, 0.95])) == pytest.approx(0.05)
    assert ece(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.0)
    assert ece(np.array([1, 1.0]), np.array([0.0, 0.0])) == pytest.approx(1.0)
    p = np.array([[0.2, 0.8], [0.5, 0.5]])
    assert jsd(p, p) == pytest.approx(0.0, abs=1e-12)
    assert jsd(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])) == pytest.approx(1.0, abs=1e-6)
    assert rank_corr(np.array([1, 2, 3.0]), np.array([10, 20, 30.0])) == pytest.approx(1.0)
    assert rank_corr(np.array([1, 2, 3.0]), np.array([3, 2, 1.0])) == pytest.approx(-1.0)


def test_fidelity_blocks_a_student_far_below_its_teacher_but_not_one_above_it():
    rng = np.random.default_rng(0)
    y = (rng.random(4000) < 0.3).astype(float)
    good = np.clip(0.3 + 0.25 * (y - 0.3) + rng.normal(0, 0.1, 4000), 0.01, 0.99)
    noise = np.clip(0.3 + rng.normal(0, 0.05, 4000), 0.01, 0.99)
    bad = fidelity(BINARY, "distill", y, good, noise, THRESHOLDS)
    assert not bad.passed and any("AUC gap" in f for f in bad.failures)
    better = fidelity(BINARY, "distill", y, noise, good, THRESHOLDS)
    assert better.metrics["auc_gap"] < 0 and not any("AUC gap" in f for f in better.failures)
    shifted = fidelity(BINARY, "distill", y, good, np.clip(good + 0.2, 0, 1), THRESHOLDS)
    assert any("ECE" in f for f in shifted.failures)            # same ranking, miscalibrated: blocks


def test_regression_gaps_are_relative_and_multiclass_uses_macro_f1():
    y = np.linspace(0, 10, 200)
    ok = fidelity(REG, "distill", y, y + 1.0, y + 1.02, THRESHOLDS)
    assert ok.passed and ok.metrics["mae_gap"] == pytest.approx(0.02, abs=1e-6)
    worse = fidelity(REG, "direct", y, y + 1.0, y + 1.2, THRESHOLDS)
    assert not worse.passed and any("MAE gap" in f for f in worse.failures)
    labels = np.repeat(np.arange(4), 50).astype(float)
    perfect = np.eye(4)[labels.astype(int)] * 0.9 + 0.025
    uniform = np.full((200, 4), 0.25)
    uniform[:, 0] += 0.01
    assert not fidelity(MULTI, "distill", labels, perfect, uniform, THRESHOLDS).passed


def test_routing_follows_the_configured_thresholds():
    rules = {"binary": {"distill_auc": 0.6, "rule_auc": 0.52},
             "multiclass": {"distill_f1_per_chance": 2.0, "rule_f1_per_chance": 1.0},
             "regression": {"distill_r2": 0.05, "rule_r2": 0.01}}
    y = np.array([0, 0, 1, 1, 0, 1], float)
    assert route(BINARY, y, np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7]), rules)["route"] == "distill"
    assert route(BINARY, y, np.array([0.5] * 6), rules)["route"] == "rule"
    assert route(BINARY, y, np.array([0.1, 0.6, 0.5, 0.9, 0.4, 0.05]), rules)["route"] == "direct"
    assert route(BINARY, np.zeros(6), np.linspace(0, 1, 6), rules)["route"] == "rule"   # AUC undefined
    assert "validation months" in route(REG, np.arange(6.0), np.arange(6.0), rules)["reason"]


def test_platt_and_bias_correction_recover_known_maps():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 + 2.0 * raw)))).astype(float)
    platt = fit_platt(raw, y)
    assert platt["a"] == pytest.approx(0.5, abs=0.06) and platt["b"] == pytest.approx(2.0, abs=0.1)
    assert calibrate("binary", np.array([0.0]), platt)[0] == pytest.approx(1 / (1 + np.exp(-platt["a"])))
    lin = fit_bias_correction(raw, 3 + 0.5 * raw)
    assert lin["a"] == pytest.approx(3) and lin["b"] == pytest.approx(0.5)


def test_audit_chain_verifies_and_detects_each_kind_of_tampering(tmp_path):
    log = AuditLog(tmp_path / "audit.log", b"k" * 32)
    for i in range(4):
        log.append("promotion", decision="promote", month=f"2025-0{i + 1}")
    assert log.verify() == 4
    original = (tmp_path / "audit.log").read_text().splitlines()

    def tampered(lines: list[str]) -> str:
        (tmp_path / "audit.log").write_text("\n".join(lines) + "\n")
        with pytest.raises(AuditTampered) as err:
            log.verify()
        return str(err.value)

    edited = json.loads(original[1])
    edited["decision"] = "reject"
    assert "line 2 was modified" in tampered([original[0], json.dumps(edited), *original[2:]])
    assert "line 2 does not follow" in tampered([original[0], *original[2:]])            # deleted
    assert "line 2 does not follow" in tampered([original[0], original[2], original[1], original[3]])
    with pytest.raises(AuditTampered):
        log.append("promotion", decision="forced")                                      # no append to a broken chain
    (tmp_path / "audit.log").write_text("\n".join(original) + "\n")
    assert log.verify() == 4
    with pytest.raises(AuditTampered, match="modified"):
        AuditLog(tmp_path / "audit.log", b"x" * 32).verify()                            # wrong key
