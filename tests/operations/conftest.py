"""A served world for the operations tests: 33 months of history, a trained champion, and three
months waiting to arrive.

1,200 synthetic customers x 36 months (2023-01 .. 2025-12). The history (up to 2025-09) is in the
warehouse; Phase 0 runs only for the months training and drift read (the split's four months);
the ``retrain`` job builds the training set and trains a small teacher and its LightGBM bar for
2025-09, the ``students`` job distils each task, and ``promote`` makes them the champion. The
files of 2025-10 .. 2025-12 wait in a staging folder, to be dropped into the raw folder one month
at a time. Every step is a Dagster job run on one instance, as the daemon would launch it.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import yaml

from finai_models import months as M
from finai_models.config import REPO_ROOT, Settings, load_settings
from finai_models.data.generate import generate_synthetic
from finai_models.data.raw_schema import TABLES, schemas
from finai_models.data.store import month_file
from finai_models.data.warehouse import load_month

HISTORY = ("2023-01", "2025-09")
ARRIVING = ("2025-10", "2025-11", "2025-12")
SPLIT = {"train": ["2023-11", "2023-12"], "validation": ["2024-07", "2024-07"], "test": ["2025-02", "2025-02"]}
CUSTOMERS = 1200
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


@dataclass
class World:
    settings: Settings
    defs: dg.Definitions
    instance: dg.DagsterInstance
    staging: Path

    def run(self, job: str, partition: str | None = None, tags: dict | None = None, assets: list | None = None
            ) -> dg.ExecuteInProcessResult:
        return self.defs.resolve_job_def(job).execute_in_process(
            partition_key=partition, instance=self.instance, tags=tags, raise_on_error=False, run_config=QUIET,
            asset_selection=assets)

    def drop(self, month: str) -> None:
        """The bank's extract of ``month`` lands in the raw folder, one file per table."""
        for table in TABLES:
            target = self.settings.raw_dir / table / f"{month}.parquet"
            shutil.copyfile(self.staging / table / f"{month}.parquet", target)


def _edit(path: Path, edit) -> None:
    doc = yaml.safe_load(path.read_text())
    edit(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


def _configure(configs: Path) -> None:
    def dataset(d):
        d["split"] = SPLIT
        d["generator"]["customers"] = CUSTOMERS

    def teacher(d):
        d["train"].update(epochs=3, batch_size=256, eval_rows=1200)
        d["baselines"]["lightgbm"].update(n_estimators=15, early_stopping_rounds=5)

    def distill(d):       # the gate's own tests are in tests/distill; here every student must serve
        d["fidelity"]["tier1"] = {"binary": {"max_auc_gap": 1.0, "max_ece": 1.0},
                                  "multiclass": {"max_macro_f1_gap": 1.0},
                                  "regression": {"max_mae_gap": 9.0, "max_rmse_gap": 9.0}}

    _edit(configs / "datasets" / "synthetic.yaml", dataset)
    _edit(configs / "feature_groups.yaml", lambda d: d.update(fit_months=2))
    _edit(configs / "teacher.yaml", teacher)
    _edit(configs / "distill.yaml", distill)
    _edit(configs / "monitoring.yaml", lambda d: d["drift"].update(retrain_after_months=2))
    # two training months of 1,200 customers are too few for every group to beat chance by a margin; the
    # dead-group gate has its own tests (tests/phase0)
    _edit(configs / "pipeline.yaml", lambda d: d["dead_group"].update(min_lift=-1.0))


def _ok(result: dg.ExecuteInProcessResult, what: str) -> None:
    failed = [e.check_name for e in result.get_asset_check_evaluations() if not e.passed]
    assert result.success, f"{what}: failed checks {failed}"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("operations")
    configs = root / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    _configure(configs)
    saved = {k: os.environ.get(k) for k in ("FINAI_CONFIG_DIR", "FINAI_WORKDIR")}
    os.environ.update(FINAI_CONFIG_DIR=str(configs), FINAI_WORKDIR=str(root / "work"))
    try:
        s = load_settings()
        generate_synthetic(s, s.raw_dir, CUSTOMERS, 36, seed=3, progress=False)
        staging = root / "staging"
        for table in TABLES:
            (staging / table).mkdir(parents=True)
            for month in ARRIVING:
                shutil.move(s.raw_dir / table / f"{month}.parquet", staging / table / f"{month}.parquet")
        with duckdb.connect(str(s.path("warehouse"))) as con:
            for table in TABLES:
                expected = schemas(s.products)[table]
                for month in M.month_range(*HISTORY):
                    load_month(con, s.pipeline.warehouse.raw_schema, table, month_file(s.raw_dir, table, month),
                               month, expected)
        from finai_assets.definitions import defs

        with dg.instance_for_test(overrides={"telemetry": {"enabled": False}}) as instance:
            w = World(s, defs(), instance, staging)
            _ok(w.run("phase0_state"), "fitted state")
            for month in sorted({m for pair in SPLIT.values() for m in pair}):
                _ok(w.run("phase0_month", month), f"Phase 0 of {month}")
            _ok(w.run("retrain", HISTORY[1], tags={"finai/trigger": "test"}), "retrain")
            for task in s.tasks:
                _ok(w.run("students", f"{HISTORY[1]}|{task.name}"), f"student {task.name}")
            _ok(w.run("promote", HISTORY[1]), "promotion")
            yield w
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
