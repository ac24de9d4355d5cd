"""The distillation objective, the fidelity metrics and routing, calibration, and the audit chain."""

from __future__ import annotations

import json

import numpy as np
import pytest

from finai_models.distill.fidelity import ece, fidelity, jsd, rank_corr, route
from finai_models.distill.objective import BlendedObjective, Targets
from finai_models.distill.students import fit_bias_correction, fit_platt, screen_features
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


def test_an_undefined_tier2_metric_is_recorded_but_an_undefined_tier1_metric_blocks():
    rng = np.random.default_rng(1)
    y = (rng.random(2000) < 0.2).astype(float)
    weak_teacher = np.clip(0.2 + 0.005 * (y - 0.2) + rng.normal(0, 0.05, 2000), 0.01, 0.99)
    constant = np.full(2000, y.mean())                      # a base-rate student: rank correlation undefined
    result = fidelity(BINARY, "direct", y, weak_teacher, constant, THRESHOLDS)
    assert np.isnan(result.metrics["rank_corr"]) and result.passed, result
    no_positives = fidelity(BINARY, "direct", np.zeros(2000), weak_teacher, constant, THRESHOLDS)
    assert not no_positives.passed and "tier-1 metrics not computable" in no_positives.failures[-1]


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
    rules = {"binary": {"distill_auc": 0.6, "rule_auc": 0.52, "rule_margin_se": 0.0},
             "multiclass": {"distill_f1_per_chance": 2.0, "rule_f1_per_chance": 1.0},
             "regression": {"distill_r2": 0.05, "rule_r2": 0.01}}
    y = np.array([0, 0, 1, 1, 0, 1], float)
    assert route(BINARY, y, np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7]), rules)["route"] == "distill"
    assert route(BINARY, y, np.array([0.5] * 6), rules)["route"] == "rule"
    assert route(BINARY, y, np.array([0.1, 0.6, 0.5, 0.9, 0.4, 0.05]), rules)["route"] == "direct"
    assert route(BINARY, np.zeros(6), np.linspace(0, 1, 6), rules)["route"] == "rule"   # AUC undefined
    assert "validation months" in route(REG, np.arange(6.0), np.arange(6.0), rules)["reason"]


def _scores_with_auc(positives: int, negatives: int, target: float, seed: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Labels and binormal scores whose AUC is ``target``: evenly spaced quantiles (seed None) or draws."""
    from scipy.stats import norm

    shift = np.sqrt(2) * norm.ppf(target)
    if seed is None:
        pos, neg = (norm.ppf((np.arange(n) + 0.5) / n) for n in (positives, negatives))
    else:
        rng = np.random.default_rng(seed)
        pos, neg = rng.normal(size=positives), rng.normal(size=negatives)
    return np.r_[np.ones(positives), np.zeros(negatives)], np.r_[pos + shift, neg]


def test_routing_asks_a_weak_binary_teacher_to_clear_the_floor_by_its_standard_error():
    rules = {"binary": {"distill_auc": 0.55, "rule_auc": 0.52, "rule_margin_se": 1.0}}
    y_small, s_small = _scores_with_auc(60, 1940, 0.545)
    small = route(BINARY, y_small, s_small, rules)
    y_big, s_big = _scores_with_auc(6000, 194000, 0.545)
    big = route(BINARY, y_big, s_big, rules)
    assert small["teacher_value"] == pytest.approx(big["teacher_value"], abs=0.005)
    assert 0.535 < small["teacher_value"] < 0.55
    assert small["route"] == "rule" and "60 positives" in small["reason"] and "1 SE" in small["reason"], small
    assert big["route"] == "direct" and big["rule_at_or_below"] < 0.525, big
    no_margin = route(BINARY, y_small, s_small, {"binary": {**rules["binary"], "rule_margin_se": 0.0}})
    assert no_margin["route"] != "rule"


def test_auc_standard_error_matches_hanley_mcneil_and_shrinks_with_rows():
    from finai_models.metrics import auc, auc_standard_error

    aucs = [auc(*_scores_with_auc(100, 900, 0.6, seed)) for seed in range(300)]   # the spread it estimates
    assert auc_standard_error(float(np.mean(aucs)), 100, 900) == pytest.approx(np.std(aucs), rel=0.15)
    assert auc_standard_error(0.55, 6000, 194000) < auc_standard_error(0.55, 60, 1940) / 5
    assert np.isnan(auc_standard_error(0.5, 0, 100))


def test_platt_and_bias_correction_recover_known_maps():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=20000)
    y = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 + 2.0 * raw)))).astype(float)
    platt = fit_platt(raw, y)
    assert platt["a"] == pytest.approx(0.5, abs=0.06) and platt["b"] == pytest.approx(2.0, abs=0.1)
    assert calibrate("binary", np.array([0.0]), platt)[0] == pytest.approx(1 / (1 + np.exp(-platt["a"])))
    reversed_ = fit_platt(-raw, y)                   # a student whose order is upside down on these rows
    assert reversed_["b"] == 0.0 and calibrate("binary", np.array([-3.0, 3.0]), reversed_) == pytest.approx(y.mean())
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


def test_screening_keeps_the_columns_that_explain_the_target():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, 200)).astype(np.float32)
    x[:, 7] = 1.0                                                   # constant: never kept
    logits = np.stack([x[:, 3] - 2 * x[:, 150], x[:, 42] + 0.5 * rng.normal(size=5000)], axis=1)
    logits[:100] = np.nan                                           # rows without a target are ignored
    assert screen_features(x, logits, 3).tolist() == [3, 42, 150]
    assert screen_features(x, logits[:, 0], 1, max_rows=1000).tolist() == [150]
    assert 7 not in screen_features(x, logits, 199)
    assert screen_features(x, logits, 500).tolist() == list(range(200))


def test_ece_noise_is_what_a_calibrated_model_shows_on_few_rows():
    from finai_models.distill.fidelity import ece, ece_noise

    rng = np.random.default_rng(0)
    p = rng.beta(2, 6, 550)
    observed = [ece((rng.random(550) < p).astype(float), p) for _ in range(300)]   # perfectly calibrated
    assert np.mean(observed) == pytest.approx(ece_noise(p), rel=0.25)
    assert np.mean(observed) > 0.03                          # why a fixed 0.05 bound fails good students
    assert ece_noise(np.repeat(p, 400)) == pytest.approx(ece_noise(p) / 20)   # 1/sqrt(n): negligible on large months
