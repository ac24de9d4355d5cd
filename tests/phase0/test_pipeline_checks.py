"""Phase 0 through Dagster: a clean run, then one planted leak per blocking check.

Each planted leak turns its check red and the assets downstream of it are not materialized.
The warehouse is built directly (fast); everything from the fitted state on runs as Dagster assets.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pytest
import yaml
from dagster_duckdb import DuckDBResource

from finai_assets.defs.features.assets import feature_group_assets, fitted_state, month_inputs
from finai_assets.defs.features.checks import feature_sources_precede_snapshot, fitted_state_saw_only_training_months
from finai_assets.defs.labels.assets import labels
from finai_assets.defs.labels.checks import label_windows_after_snapshot, labels_not_in_features
from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.training.assets import training_set
from finai_assets.defs.training.checks import (
    no_dead_feature_group,
    split_gap_covers_label_windows,
    training_rows_have_no_label_leakage,
)
from finai_models.config import REPO_ROOT, load_settings
from finai_models.data.generate import generate_synthetic
from finai_models.data.warehouse import load_dataset
from finai_models.phase0.groups import group_class
from finai_models.phase0.labels import compute_labels

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

SPLIT = {"train": ["2023-11", "2023-12"], "validation": ["2024-07", "2024-07"], "test": ["2025-02", "2025-02"]}
MONTHS = ["2023-11", "2023-12", "2024-07", "2025-02"]
PLANT_MONTH = "2023-12"
MONTH_ASSETS = [month_inputs, *feature_group_assets, labels]
MONTH_CHECKS = [feature_sources_precede_snapshot, label_windows_after_snapshot, labels_not_in_features]
TRAINING_CHECKS = [split_gap_covers_label_windows, training_rows_have_no_label_leakage, no_dead_feature_group]


def _instance():
    return dg.instance_for_test(overrides={"telemetry": {"enabled": False}})


class PlantedConfig(FinAIConfig):
    """Loads the settings and replaces one task's label window (a mis-specified task)."""

    task: str = ""
    window: list[int] = []

    def load(self):
        s = super().load()
        tasks = tuple(dataclasses.replace(t, window=tuple(self.window)) if t.name == self.task else t for t in s.tasks)
        return dataclasses.replace(s, tasks=tasks)


@dataclasses.dataclass
class Env:
    root: Path
    config_dir: Path
    clean_training: object = None

    def resources(self, finai: FinAIConfig | None = None) -> dict:
        return {"finai": finai or FinAIConfig(config_dir=str(self.config_dir), workdir=str(self.root)),
                "warehouse": DuckDBResource(database=str(self.root / "warehouse.duckdb"))}

    def copy(self, target: Path) -> Env:
        shutil.copytree(self.root, target / "work")
        return Env(target / "work", self.config_dir)


def _materialize(env: Env, assets: list, checks: list, partition: str | None = None, finai=None, run_config=None):
    with _instance() as instance:
        return dg.materialize([*assets, *checks], partition_key=partition, resources=env.resources(finai),
                              instance=instance, raise_on_error=False, run_config=run_config)


def _failed(result) -> set[str]:
    return {e.check_name for e in result.get_asset_check_evaluations() if not e.passed}


def _materialized(result) -> set[str]:
    return {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    root = tmp_path_factory.mktemp("p0dag")
    config_dir = root / "configs"
    shutil.copytree(REPO_ROOT / "configs", config_dir)
    dataset = yaml.safe_load((config_dir / "datasets" / "synthetic.yaml").read_text())
    dataset["split"] = SPLIT
    (config_dir / "datasets" / "synthetic.yaml").write_text(yaml.safe_dump(dataset, sort_keys=False))
    features = yaml.safe_load((config_dir / "feature_groups.yaml").read_text())
    features["fit_months"] = 2
    (config_dir / "feature_groups.yaml").write_text(yaml.safe_dump(features, sort_keys=False))
    work = root / "work"
    settings = load_settings(config_dir, workdir=work)
    generate_synthetic(settings, settings.raw_dir, 1200, 36, seed=5, progress=False)
    with duckdb.connect(str(settings.path("warehouse"))) as con:
        load_dataset(con, settings)
    e = Env(work, config_dir)
    result = _materialize(e, [fitted_state], [fitted_state_saw_only_training_months])
    assert result.success and not _failed(result)
    for month in MONTHS:
        result = _materialize(e, MONTH_ASSETS, MONTH_CHECKS, partition=month)
        assert result.success, (month, _failed(result))
        assert not _failed(result)
    result = _materialize(e, [training_set], TRAINING_CHECKS)
    assert result.success, _failed(result)
    e.clean_training = result
    return e


def test_clean_run_materializes_all_groups_and_passes_every_check(env):
    result = env.clean_training
    assert not _failed(result)
    evaluation = next(e for e in result.get_asset_check_evaluations() if e.check_name == "no_dead_feature_group")
    table = evaluation.metadata["single_group_power"].value
    assert table.count("\n") == 1 + 17, "one row per feature group"
    meta = result.asset_materializations_for_node("training__training_set")[0].metadata
    assert meta["columns"].value >= 1211
    assert set(meta["rows"].value) == {"train", "validation", "test"}


def test_future_transaction_blocks_the_month(env, tmp_path):
    planted = env.copy(tmp_path)
    with duckdb.connect(str(planted.root / "warehouse.duckdb")) as con:
        con.execute("""INSERT INTO raw.card_transactions
                       SELECT customer_id, month, TIMESTAMP '2024-01-03 10:00:00', 12.5, mcc, merchant_id, channel
                       FROM raw.card_transactions WHERE month = DATE '2023-12-01' LIMIT 1""")
    result = _materialize(planted, MONTH_ASSETS, MONTH_CHECKS, partition=PLANT_MONTH)
    assert "feature_sources_precede_snapshot" in _failed(result)
    assert not any(k.startswith("features/") for k in _materialized(result)), "groups must not run on leaked inputs"


def test_label_copy_in_a_feature_blocks_training(env, tmp_path, monkeypatch):
    planted = env.copy(tmp_path)
    cls = group_class("derived_temporal")
    honest = cls.transform

    def leaky(self, x, con):
        out = honest(self, x, con)
        label = compute_labels(con, self.settings, x.month, [5411]).table["will_acquire_payments"].to_numpy(
            zero_copy_only=False)
        out[:, 0] = np.nan_to_num(label.astype(np.float32))
        return out

    monkeypatch.setattr(cls, "transform", leaky)
    result = _materialize(planted, [*MONTH_ASSETS, training_set], MONTH_CHECKS, partition=PLANT_MONTH)
    assert "labels_not_in_features" in _failed(result)
    assert "training/training_set" not in _materialized(result)


def test_label_window_opening_at_t_blocks_training(env, tmp_path):
    planted = env.copy(tmp_path)
    finai = PlantedConfig(config_dir=str(env.config_dir), workdir=str(planted.root), task="churn_signal",
                          window=[0, 3])
    result = _materialize(planted, [labels, training_set], [label_windows_after_snapshot], partition=PLANT_MONTH,
                          finai=finai)
    assert _failed(result) == {"label_windows_after_snapshot"}
    assert "training/training_set" not in _materialized(result)


def test_fitting_on_a_validation_month_blocks_features(env, tmp_path):
    planted = env.copy(tmp_path)
    demographics = next(a for a in feature_group_assets if a.key.path[-1] == "demographics")
    result = _materialize(planted, [fitted_state, month_inputs, demographics], [fitted_state_saw_only_training_months],
                          partition=PLANT_MONTH,
                          run_config={"ops": {"phase0__fitted_state": {"config": {"months": ["2024-07"]}}}})
    assert _failed(result) == {"fitted_state_saw_only_training_months"}
    assert "features/demographics" not in _materialized(result)


def test_label_window_longer_than_the_split_gap_fails(env, tmp_path):
    planted = env.copy(tmp_path)
    finai = PlantedConfig(config_dir=str(env.config_dir), workdir=str(planted.root), task="segment_prediction",
                          window=[9, 9])
    result = _materialize(planted, [training_set], [split_gap_covers_label_windows], finai=finai)
    assert _failed(result) == {"split_gap_covers_label_windows"}
    assert not result.success


def test_constant_group_is_caught_as_dead(env, tmp_path, monkeypatch):
    planted = env.copy(tmp_path)
    cls = group_class("product_hierarchy")
    monkeypatch.setattr(cls, "transform", lambda self, x, con: np.zeros((x.n, self.dim), np.float32))
    hierarchy = next(a for a in feature_group_assets if a.key.path[-1] == "product_hierarchy")
    for month in MONTHS:
        assert _materialize(planted, [hierarchy], [], partition=month).success
    result = _materialize(planted, [training_set], [no_dead_feature_group])
    evaluation = next(e for e in result.get_asset_check_evaluations())
    assert not evaluation.passed and evaluation.metadata["dead"].value == ["product_hierarchy"]


def test_missing_upstream_month_is_named_and_nothing_recorded(env, tmp_path):
    planted = env.copy(tmp_path)
    with duckdb.connect(str(planted.root / "warehouse.duckdb")) as con:
        con.execute("DELETE FROM raw.monthly_snapshots WHERE month = DATE '2023-10-01'")
    result = _materialize(planted, MONTH_ASSETS, MONTH_CHECKS, partition=PLANT_MONTH)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "needs raw months that are not in the warehouse: monthly_snapshots 2023-10" in str(
        failure.event_specific_data.error)
    assert not _materialized(result)


def test_group_dim_disagreeing_with_config_is_named(env, tmp_path):
    planted = env.copy(tmp_path)
    config_dir = tmp_path / "configs"
    shutil.copytree(env.config_dir, config_dir)
    features = yaml.safe_load((config_dir / "feature_groups.yaml").read_text())
    next(g for g in features["groups"] if g["name"] == "txn_behavior")["dim"] = 15
    (config_dir / "feature_groups.yaml").write_text(yaml.safe_dump(features, sort_keys=False))
    behaviour = next(a for a in feature_group_assets if a.key.path[-1] == "txn_behavior")
    finai = FinAIConfig(config_dir=str(config_dir), workdir=str(planted.root))
    before = (planted.root / "artifacts/phase0/features/txn_behavior/2023-12.parquet").stat().st_mtime_ns
    result = _materialize(planted, [behaviour], [], partition=PLANT_MONTH, finai=finai)
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "feature group txn_behavior produced 14 columns (14 names) but feature_groups.yaml says dim 15" in str(
        failure.event_specific_data.error)
    assert (planted.root / "artifacts/phase0/features/txn_behavior/2023-12.parquet").stat().st_mtime_ns == before
