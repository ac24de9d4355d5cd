"""The LightGBM baseline on the tiny training set, and the comparison / ablation tables."""

from __future__ import annotations

import math

import numpy as np
import pytest

from finai_models.artifacts import ArtifactPaths
from finai_models.errors import FinAIError
from finai_models.teacher.baselines import train_lightgbm_baseline
from finai_models.teacher.checks import gate_spread
from finai_models.teacher.compare import ablation_table, compare


def test_lightgbm_baseline_learns_every_task(tiny_env, tmp_path):
    training_set = ArtifactPaths.of(tiny_env).current_training_set()
    summary = train_lightgbm_baseline(tiny_env, training_set, tmp_path / "lgb", log=lambda _: None)
    assert (tmp_path / "lgb" / "metrics.json").is_file()
    tasks = summary["test"]["tasks"]
    assert set(tasks) == {t.name for t in tiny_env.tasks}
    assert summary["test"]["mean_binary_auc"] > 0.6          # labels depend on the features
    assert all(r >= 1 for r in summary["rounds"].values())
    assert summary["candidates"] == 4                           # the committed search: 2 leaves x 2 leaf sizes
    assert set(summary["chosen"]["churn_signal"]) == {"num_leaves", "min_child_samples"}
    assert (tmp_path / "lgb" / "test_scores.npz").is_file()


def _run(root, settings, y, customers, quality, rng):
    """A finished run folder whose test scores are the labels plus noise of the given size."""
    from finai_models.teacher.data import TeacherData
    from finai_models.teacher.run import save_scores

    scores = {}
    for t in settings.tasks:
        label = y[t.name]
        if t.type == "multiclass":
            onehot = np.eye(t.classes)[np.nan_to_num(label).astype(int)]
            scores[t.name] = onehot + quality * rng.random(onehot.shape)
        else:
            scores[t.name] = np.nan_to_num(label) + quality * rng.normal(size=len(label))
    root.mkdir(parents=True)
    months = np.array(["2025-02"] * len(customers))
    data = TeacherData(np.zeros((len(customers), 1), np.float32), y, customer_id=customers, month=months)
    save_scores(root / "test_scores.npz", data, scores)
    return root


def test_compare_reads_the_runs_scores_and_gives_paired_verdicts(settings, tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    y = {}
    for t in settings.tasks:
        y[t.name] = (rng.random(n) < 0.3).astype(float) if t.type == "binary" else \
            rng.integers(0, t.classes, n).astype(float) if t.type == "multiclass" else rng.normal(size=n)
    customers = np.arange(n)
    roots = {"ple": _run(tmp_path / "ple", settings, y, customers, 0.5, rng),
             "lightgbm": _run(tmp_path / "lgb", settings, y, customers, 3.0, rng)}
    table = compare(settings, roots, resamples=200)
    assert table["verdicts"]["ple"] == {"win": len(settings.tasks), "tie": 0, "loss": 0}
    assert "ple - lightgbm" in table["markdown"] and "win" in table["markdown"]
    _run(tmp_path / "other", settings, y, customers[::-1].copy(), 0.5, rng)
    with pytest.raises(FinAIError, match="other test rows"):
        compare(settings, {**roots, "mmoe": tmp_path / "other"}, resamples=10)


def test_ablation_table_reports_deltas_against_full():
    row = {"experts": ["a"] * 7, "gate": "softmax", "adatt": False}
    results = {"full": {**row, "test": {"mean_binary_auc": 0.70, "primary_score": 0.5}},
               "no_hgcn": {**row, "experts": ["a"] * 6, "test": {"mean_binary_auc": 0.68, "primary_score": 0.49}}}
    table = ablation_table(results)
    assert "| no_hgcn | 6 | softmax | False |" in table and "-0.0200" in table


def test_gate_spread_is_zero_for_identical_gates_and_positive_otherwise():
    same = {"experts": ["x", "y"], "mean_weight": {"a": {"x": 0.5, "y": 0.5}, "b": {"x": 0.5, "y": 0.5}}}
    apart = {"experts": ["x", "y"], "mean_weight": {"a": {"x": 0.9, "y": 0.1}, "b": {"x": 0.2, "y": 0.8}}}
    assert gate_spread(same) == 0.0
    assert math.isclose(gate_spread(apart), 1.4)


def test_search_grid_and_its_class_limit():
    from finai_models.teacher.baselines import candidates
    from finai_models.teacher.tasks import TaskSpec

    base = {"num_leaves": 31, "learning_rate": 0.05, "search": {"num_leaves": [15, 63], "min_child_samples": [20, 200]},
            "search_max_classes": 10}
    grid = candidates(base, TaskSpec("b", "binary"))
    assert len(grid) == 4 and {(c["num_leaves"], c["min_child_samples"]) for c in grid} == {
        (15, 20), (15, 200), (63, 20), (63, 200)}
    assert all("search" not in c and "search_max_classes" not in c for c in grid)
    assert len(candidates(base, TaskSpec("m", "multiclass", classes=7))) == 4
    (only,) = candidates(base, TaskSpec("mcc", "multiclass", classes=50))    # too many classes: the base alone
    assert only["num_leaves"] == 31
