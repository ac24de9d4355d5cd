"""The comparison's statistics: weighted metrics, bootstrap intervals, paired verdicts, ceiling shares."""

from __future__ import annotations

import numpy as np
import pytest

from finai_models import metrics as M
from finai_models.teacher.quality import TaskScorer, compare_models, compare_task, markdown, share
from finai_models.teacher.tasks import TaskSpec

BINARY, MULTI, REG = TaskSpec("b", "binary"), TaskSpec("m", "multiclass", classes=4), TaskSpec("r", "regression")


def _binary(n=4000, signal=1.0, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    y = (rng.random(n) < 1 / (1 + np.exp(-signal * z))).astype(float)
    return z, y, rng


def test_unit_weights_reproduce_the_plain_metrics_ties_included():
    z, y, rng = _binary()
    tied = np.round(z, 1)                                          # many tied scores
    assert TaskScorer(BINARY, y, tied)(np.ones(len(y))) == pytest.approx(M.auc(y, tied), abs=1e-12)
    ym = rng.integers(0, 4, 1000).astype(float)
    proba = rng.random((1000, 4))
    assert TaskScorer(MULTI, ym, proba)(np.ones(1000)) == pytest.approx(M.macro_f1(ym, proba.argmax(1), 4))
    yr, pr = rng.normal(size=500), rng.normal(size=500)
    assert TaskScorer(REG, yr, pr)(np.ones(500)) == pytest.approx(np.abs(yr - pr).mean())


def test_integer_weights_equal_repeating_rows():
    z, y, rng = _binary(500)
    w = rng.poisson(1.0, 500)
    rows = np.repeat(np.arange(500), w)
    assert TaskScorer(BINARY, y, z)(w.astype(float)) == pytest.approx(M.auc(y[rows], z[rows]), abs=1e-12)


def test_missing_labels_are_left_out():
    z, y, _ = _binary(1000)
    y2 = y.copy()
    y2[:100] = np.nan
    r = compare_task(BINARY, y2, np.arange(1000), {"a": [z]}, resamples=50)
    assert r["rows"] == 900
    assert r["models"]["a"]["estimate"] == pytest.approx(M.auc(y[100:], z[100:]))


def test_interval_covers_the_truth_and_narrows_with_more_customers():
    z, y, _ = _binary(20000, seed=3)
    true_auc = M.auc(y, z)
    small = compare_task(BINARY, y[:2000], np.arange(2000), {"a": [z[:2000]]}, resamples=400)["models"]["a"]
    big = compare_task(BINARY, y, np.arange(20000), {"a": [z]}, resamples=400)["models"]["a"]
    assert big["low"] <= true_auc <= big["high"]
    assert (big["high"] - big["low"]) < 0.5 * (small["high"] - small["low"])


def test_a_customer_in_two_months_moves_as_one():
    """Duplicated rows of the same customers: clustering by customer widens the interval to the truth."""
    z, y, _ = _binary(3000, seed=4)
    y2, z2 = np.concatenate([y, y]), np.concatenate([z, z])
    by_row = compare_task(BINARY, y2, np.arange(6000), {"a": [z2]}, resamples=400)["models"]["a"]
    by_customer = compare_task(BINARY, y2, np.tile(np.arange(3000), 2), {"a": [z2]}, resamples=400)["models"]["a"]
    assert (by_customer["high"] - by_customer["low"]) > 1.2 * (by_row["high"] - by_row["low"])


def test_paired_verdicts_win_tie_loss():
    z, y, rng = _binary(8000, signal=2.0, seed=5)
    weak = z + 2.0 * rng.normal(size=len(z))
    same = z + 1e-9 * rng.normal(size=len(z))
    r = compare_task(BINARY, y, np.arange(len(y)), {"ref": [z], "weak": [weak], "same": [same]}, "ref", 300)
    assert r["models"]["weak"]["advantage"]["verdict"] == "loss"
    assert r["models"]["same"]["advantage"]["verdict"] == "tie"
    r = compare_task(BINARY, y, np.arange(len(y)), {"ref": [weak], "strong": [z]}, "ref", 300)
    assert r["models"]["strong"]["advantage"]["verdict"] == "win"


def test_lower_mae_is_an_advantage():
    rng = np.random.default_rng(6)
    y = rng.normal(size=5000)
    r = compare_task(REG, y, np.arange(5000), {"ref": [y + rng.normal(size=5000)], "good": [y + 0.1 * rng.normal(
        size=5000)]}, "ref", 200)
    assert r["models"]["good"]["advantage"]["estimate"] > 0
    assert r["models"]["good"]["advantage"]["verdict"] == "win"


def test_seeds_widen_the_interval_and_are_averaged():
    z, y, rng = _binary(5000, seed=7)
    runs = [z + s * rng.normal(size=len(z)) for s in (0.2, 1.0, 2.0)]
    one = compare_task(BINARY, y, np.arange(len(y)), {"a": runs[:1]}, resamples=300)["models"]["a"]
    three = compare_task(BINARY, y, np.arange(len(y)), {"a": runs}, resamples=300)["models"]["a"]
    assert three["estimate"] == pytest.approx(np.mean([M.auc(y, r) for r in runs]))
    assert len(three["seeds"]) == 3 and three["seed_sd"] > 0
    assert (three["high"] - three["low"]) > (one["high"] - one["low"])


def test_compare_models_counts_verdicts_and_skips_unmodelled_tasks():
    z, y, rng = _binary(3000, signal=2.0, seed=8)
    yr = rng.normal(size=3000)
    tasks = (BINARY, REG)
    scores = {"lgb": [{"b": z + rng.normal(size=3000), "r": yr + rng.normal(size=3000)}],
              "ple": [{"b": z, "r": yr + 0.1 * rng.normal(size=3000)}],
              "students": [{"b": z, "r": None}]}                          # a task routed to rules
    out = compare_models(tasks, {"b": y, "r": yr}, np.arange(3000), scores, "lgb", resamples=200)
    assert out["verdicts"]["ple"] == {"win": 2, "tie": 0, "loss": 0}
    assert "students" not in out["tasks"]["r"]["models"]
    text = markdown(out, ["ple", "lgb", "students"], {"b": {"metric": "auc", "value": 0.9, "chance": 0.5}})
    assert "ple 2 wins, 0 ties, 0 losses" in text and "| b | auc |" in text


def test_share_of_the_achievable_signal():
    assert share(0.7, {"metric": "auc", "value": 0.9, "chance": 0.5}) == pytest.approx(0.5)
    assert share(0.3, {"metric": "mae", "value": 0.2, "chance": 0.4}) == pytest.approx(0.5)
    assert share(0.4, {"metric": "macro_f1", "value": 0.6, "chance": 0.2}) == pytest.approx(0.5)
    assert np.isnan(share(0.52, {"metric": "auc", "value": 0.51, "chance": 0.5}))     # oracle at chance
    assert np.isnan(share(None, {"metric": "auc", "value": 0.9, "chance": 0.5}))
