"""The LightGBM baseline on the tiny training set, and the comparison / ablation tables."""

from __future__ import annotations

import math

from finai_models.teacher.baselines import train_lightgbm_baseline
from finai_models.teacher.checks import gate_spread
from finai_models.teacher.compare import ablation_table, compare
from finai_models.teacher.service import default_training_set


def test_lightgbm_baseline_learns_every_task(tiny_env, tmp_path):
    summary = train_lightgbm_baseline(tiny_env, default_training_set(tiny_env), tmp_path / "lgb", log=lambda _: None)
    assert (tmp_path / "lgb" / "metrics.json").is_file()
    tasks = summary["test"]["tasks"]
    assert set(tasks) == {t.name for t in tiny_env.tasks}
    assert summary["test"]["mean_binary_auc"] > 0.6          # labels depend on the features
    assert all(r >= 1 for r in summary["rounds"].values())


def _summary(values: dict[str, float], settings) -> dict:
    tasks = {}
    for t in settings.tasks:
        key = {"binary": "auc", "multiclass": "macro_f1", "regression": "mae"}[t.type]
        tasks[t.name] = {key: values[t.type]}
    return {"test": {"tasks": tasks, "mean_binary_auc": values["binary"], "mean_macro_f1": values["multiclass"],
                     "mean_mae": values["regression"]}}


def test_compare_counts_wins_per_task_with_the_right_direction(settings):
    teacher = _summary({"binary": 0.80, "multiclass": 0.40, "regression": 0.50}, settings)
    lgb = _summary({"binary": 0.70, "multiclass": 0.50, "regression": 0.40}, settings)   # lower MAE is better
    table = compare(settings, {"ple": teacher, "lightgbm": lgb})
    kinds = [t.type for t in settings.tasks]
    assert table["wins"]["lightgbm"] == kinds.count("binary")        # teacher wins binary only
    assert "| churn_signal | auc | 0.8000 | 0.7000 | ple |" in table["markdown"]


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
