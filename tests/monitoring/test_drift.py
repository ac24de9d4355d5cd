import math

import numpy as np
import pytest

from finai_models.monitoring.drift import (
    critical_streak,
    drift_report,
    feature_drift,
    prediction_drift,
    psi,
    psi_columns,
    severity,
)


def assert_plain(value) -> None:
    """Only the types JSON has (numpy scalars subclass float, so ``type(...) is`` it is)."""
    if isinstance(value, dict | list):
        for v in value.values() if isinstance(value, dict) else value:
            assert_plain(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))


CFG = {"bins": 10, "floor": 1e-4, "sample_rows": 5000, "warning": 0.1, "critical": 0.25,
       "min_critical_features": 5, "retrain_after_months": 3}


def test_identical_distributions_have_psi_near_zero():
    rng = np.random.default_rng(0)
    assert psi(rng.normal(size=5000), rng.normal(size=5000)) < 0.01


def test_a_mean_shift_of_one_sd_is_critical():
    rng = np.random.default_rng(1)
    assert psi(rng.normal(size=5000), rng.normal(1.0, 1.0, size=5000)) > 0.25


def test_psi_by_hand_on_explicit_bins():
    # bins=2 cuts at the reference median 2.5: below it the reference has 1/2, the current 3/4;
    # above it 1/2 and 1/4; the point bin [2.5] is empty on both sides (floor vs floor: 0).
    expected = (0.75 - 0.5) * math.log(0.75 / 0.5) + (0.25 - 0.5) * math.log(0.25 / 0.5)
    assert psi(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 1.0, 4.0]), bins=2) == pytest.approx(expected)


def test_an_emptied_bin_is_floored_not_infinite():
    floor = 1e-4
    value = psi(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 1.0, 1.0]), bins=2, floor=floor)
    expected = (1 - 0.5) * math.log(1 / 0.5) + (floor - 0.5) * math.log(floor / 0.5)
    assert value == pytest.approx(expected)


def test_non_finite_values_are_dropped():
    ref, cur = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 1.0, 1.0, 4.0])
    with_gaps = psi(np.append(ref, [np.nan, np.inf]), np.append(cur, [np.nan, -np.inf, np.nan]), bins=2)
    assert with_gaps == pytest.approx(psi(ref, cur, bins=2))
    assert psi(np.array([np.nan, np.nan]), cur) == 0.0
    assert psi(ref, np.array([np.inf])) == 0.0


def test_constant_column():
    assert psi(np.full(500, 3.0), np.full(400, 3.0)) == 0.0
    assert psi(np.full(500, 3.0), np.full(400, 4.0)) > 0.25       # moved off the constant: drift
    assert psi(np.full(500, 3.0), np.full(400, 2.0)) > 0.25


def test_a_rare_flag_can_drift():
    # 95% zeros: every reference quantile is 0. The flag's rise from 5% to 30% must still show.
    rng = np.random.default_rng(2)
    ref = (rng.random(5000) < 0.05).astype(float)
    assert psi(ref, (rng.random(5000) < 0.05).astype(float)) < 0.01
    assert psi(ref, (rng.random(5000) < 0.30).astype(float)) > 0.25


def test_psi_columns_matches_psi_column_by_column():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(800, 6))
    cur = rng.normal(size=(600, 6)) + np.arange(6) * 0.3
    ref[:, 2] = rng.integers(0, 3, 800)
    cur[::5, 4] = np.nan
    values = psi_columns(ref, cur, bins=8)
    assert values.shape == (6,)
    np.testing.assert_allclose(values, [psi(ref[:, j], cur[:, j], bins=8) for j in range(6)])
    with pytest.raises(ValueError):
        psi_columns(ref, cur[:, :5])


def test_severity_bands_include_their_threshold():
    assert [severity(v, 0.1, 0.25) for v in (0.0, 0.0999, 0.1, 0.2499, 0.25, 3.0)] == [
        "ok", "ok", "warning", "warning", "critical", "critical"]


def _features(planted: int, shift: float = 1.5, d: int = 50, seed: int = 4):
    rng = np.random.default_rng(seed)
    ref, cur = rng.normal(size=(5000, d)), rng.normal(size=(5000, d))
    cols = list(rng.choice(d, planted, replace=False)) if planted else []
    cur[:, cols] += shift
    names = [f"f{j:02d}" for j in range(d)]
    groups = [f"g{j // 10}" for j in range(d)]
    return ref, cur, names, groups, {names[j] for j in cols}


def test_feature_drift_with_six_planted_columns_is_critical():
    ref, cur, names, groups, planted = _features(6)
    report = feature_drift(ref, cur, names, groups, CFG)
    assert report["status"] == "critical"
    assert report["critical"] == 6 and report["warning"] == 6
    assert {row["feature"] for row in report["top"][:6]} == planted
    assert all(row["severity"] == "critical" for row in report["top"][:6])
    assert report["top"][6]["severity"] == "ok"
    psis = [row["psi"] for row in report["top"]]
    assert psis == sorted(psis, reverse=True) and len(psis) == 20
    assert report["max_psi"] == psis[0]
    assert report["rows_reference"] == report["rows_current"] == 5000 and report["columns"] == 50
    planted_groups = {groups[names.index(f)] for f in planted}
    assert all((report["by_group"][g] >= 0.25) == (g in planted_groups) for g in set(groups))
    assert_plain(report)


def test_two_critical_columns_make_a_warning_month():
    ref, cur, names, groups, _ = _features(2)
    report = feature_drift(ref, cur, names, groups, CFG)
    assert report["critical"] == 2 and report["status"] == "warning"
    assert feature_drift(ref, cur, names, groups, {**CFG, "min_critical_features": 2})["status"] == "critical"


def test_clean_features_are_ok():
    ref, cur, names, groups, _ = _features(0)
    report = feature_drift(ref, cur, names, groups, CFG)
    assert report["status"] == "ok" and report["warning"] == 0 and report["max_psi"] < 0.1


def test_prediction_drift_without_a_previous_month_is_not_available():
    report = prediction_drift(None, {"churn_signal": np.zeros(10)}, CFG)
    assert report == {"available": False, "tasks": {}, "max_psi": 0.0, "warning": 0, "critical": 0,
                      "status": "not_available"}


def test_prediction_drift_takes_the_worst_class_and_finds_a_planted_shift():
    rng = np.random.default_rng(5)
    stable = rng.dirichlet(np.ones(4), size=4000)
    moved = rng.dirichlet(np.ones(4), size=4000)
    moved[:, 2] = rng.beta(6, 2, size=4000)                  # one class's probability moves up
    previous = {"churn_signal": rng.random(4000), "nba_primary": stable}
    current = {"churn_signal": rng.random(4000), "nba_primary": moved}
    report = prediction_drift(previous, current, CFG)
    per_class = psi_columns(stable, moved, CFG["bins"], CFG["floor"])
    assert report["tasks"]["nba_primary"]["psi"] == pytest.approx(per_class.max())
    assert int(per_class.argmax()) == 2
    assert report["tasks"]["nba_primary"]["severity"] == "critical"
    assert report["tasks"]["churn_signal"]["severity"] == "ok"
    assert (report["status"], report["critical"], report["warning"], report["available"]) == ("critical", 1, 1, True)
    assert report["max_psi"] == report["tasks"]["nba_primary"]["psi"]
    assert_plain(report)
    calm = prediction_drift(previous, {**current, "nba_primary": rng.dirichlet(np.ones(4), size=4000)}, CFG)
    assert calm["status"] == "ok"


def _report(month: str, status: str, history: list[tuple[str, str]]) -> dict:
    features = {"status": status}
    predictions = {"status": "not_available"}
    return drift_report(month, "2023-01", None, features, predictions, history, CFG)


def test_three_consecutive_critical_months_request_a_retrain():
    history = [("2023-05", "critical"), ("2023-04", "critical"), ("2023-03", "ok")]
    report = _report("2023-06", "critical", history)
    assert report["critical_streak"] == 3 and report["retrain_requested"] is True
    assert report["status"] == "critical" and report["prediction_status"] == "not_available"
    assert_plain(report)
    assert report["thresholds"] == {"warning": 0.1, "critical": 0.25, "min_critical_features": 5,
                                    "retrain_after_months": 3}
    assert _report("2023-06", "warning", history)["retrain_requested"] is False


@pytest.mark.parametrize("history", [
    [("2023-05", "critical"), ("2023-03", "critical")],                          # 2023-04 missing
    [("2023-05", "critical"), ("2023-04", "ok"), ("2023-03", "critical")],       # an ok month between
])
def test_a_gap_or_a_calm_month_breaks_the_streak(history):
    report = _report("2023-06", "critical", history)
    assert report["critical_streak"] == 2 and report["retrain_requested"] is False


def test_streak_reads_unordered_history_across_a_year_and_replaces_a_stale_entry():
    history = [("2023-01", "critical"), ("2022-11", "ok"), ("2022-12", "critical"), ("2023-02", "ok")]
    assert critical_streak(history, "2023-01") == 2
    report = _report("2023-02", "critical", history)              # a rerun: this month's old "ok" is replaced
    assert report["critical_streak"] == 3 and report["retrain_requested"] is True


def test_report_status_is_the_worse_of_features_and_predictions():
    report = drift_report("2023-06", "2023-01", "2023-05", {"status": "ok"}, {"status": "critical"}, [], CFG)
    assert (report["status"], report["feature_status"], report["previous_month"]) == ("critical", "ok", "2023-05")
    assert report["critical_streak"] == 1
    report = drift_report("2023-06", "2023-01", None, {"status": "warning"}, {"status": "not_available"}, [], CFG)
    assert report["status"] == "warning" and report["critical_streak"] == 0
