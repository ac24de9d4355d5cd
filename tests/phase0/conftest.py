"""A small warehouse (2,000 customers x 36 months) and its month inputs, shared by Phase-0 tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import pytest

from finai_models.config import Settings, load_settings
from finai_models.data.generate import generate_synthetic
from finai_models.data.warehouse import load_dataset
from finai_models.phase0.inputs import MonthInputs, build_month_inputs

TRAIN_MONTHS = ("2023-09", "2023-12")
SCORE_MONTH = "2024-08"
LATER_MONTH = "2025-05"


@dataclass
class Phase0Env:
    settings: Settings
    warehouse: Path
    train: list[MonthInputs]       # training months, all customers
    month: MonthInputs             # a validation month
    later: MonthInputs             # a test month

    def connect(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.warehouse), read_only=True)


def build_warehouse(settings: Settings, customers: int, seed: int) -> Path:
    generate_synthetic(settings, settings.raw_dir, customers, 36, seed, progress=False)
    path = settings.path("warehouse")
    with duckdb.connect(str(path)) as con:
        load_dataset(con, settings)
    return path


@pytest.fixture(scope="session")
def phase0_env(tmp_path_factory) -> Phase0Env:
    root = tmp_path_factory.mktemp("phase0")
    settings = load_settings(workdir=root)
    warehouse = build_warehouse(settings, 2000, seed=11)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        train = [build_month_inputs(con, settings, m) for m in TRAIN_MONTHS]
        month = build_month_inputs(con, settings, SCORE_MONTH)
        later = build_month_inputs(con, settings, LATER_MONTH)
    return Phase0Env(settings, warehouse, train, month, later)
