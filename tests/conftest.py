"""Test session setup: a private work directory and Dagster home (telemetry off) for every test.

The environment is set before any finai_assets import, because the Dagster definitions read
the settings (and so the work directory) when they load.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="finai-tests-"))
os.environ["FINAI_WORKDIR"] = str(_SESSION_DIR / "work")
os.environ["DAGSTER_HOME"] = str(_SESSION_DIR / "dagster_home")
os.environ.pop("FINAI_DATASET", None)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # torch and LightGBM share 2 cores in one process
os.environ.pop("FINAI_CONFIG_DIR", None)

from finai_assets.instance import ensure_dagster_home  # noqa: E402
from finai_models.config import REPO_ROOT, Settings, load_settings  # noqa: E402
from finai_models.data.generate import generate_synthetic  # noqa: E402
from finai_models.phase0.side_inputs import SideInputs, save_side  # noqa: E402

ensure_dagster_home(_SESSION_DIR / "dagster_home")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return load_settings()


@pytest.fixture(scope="session")
def panel_dir(settings: Settings) -> Path:
    """A small synthetic panel shared by read-only tests: 3,000 customers x 12 months."""
    out = _SESSION_DIR / "panel"
    generate_synthetic(settings, out, 3000, 12, seed=7, progress=False)
    return out


@pytest.fixture
def instance():
    """A throwaway Dagster instance, telemetry off like every instance of this project."""
    import dagster as dg

    with dg.instance_for_test(overrides={"telemetry": {"enabled": False}}) as inst:
        yield inst


@pytest.fixture
def config_copy(tmp_path: Path) -> Path:
    """A writable copy of configs/ for tests that break it on purpose."""
    target = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", target)
    return target


# --- a small, learnable training set in the exact on-disk format Phase 0 writes -------------------
# Teacher and distillation tests need a training set but not Phase 0's cost; this one has the real
# 17 groups and 13 tasks of configs/ with synthetic values whose labels depend on them.

ROWS = {"train": 2400, "validation": 600, "test": 600}
MONTHS = {"train": "2023-06", "validation": "2023-08", "test": "2023-10"}


def _labels(settings: Settings, x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    for i, t in enumerate(settings.tasks):
        signal = x[:, i] + 0.5 * x[:, i + 20] * x[:, i + 40]
        if t.type == "binary":
            out[t.name] = (signal + 0.3 * rng.normal(size=len(x)) > 1.0).astype(np.float64)
        elif t.type == "multiclass":
            out[t.name] = np.clip(np.digitize(signal, np.linspace(-1.5, 1.5, t.classes - 1)), 0, t.classes - 1)
        else:
            out[t.name] = signal + 0.1 * rng.normal(size=len(x))
        out[t.name] = out[t.name].astype(np.float64)
        out[t.name][rng.random(len(x)) < 0.1] = np.nan
    return out


def write_training_set(settings: Settings, version: str = "tiny", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    columns, groups = [], []
    for g in settings.feature_groups:
        groups.append({"name": g.name, "start": len(columns), "end": len(columns) + g.dim})
        columns += [f"{g.name}__{i:03d}" for i in range(g.dim)]
    out = settings.path("artifacts") / "training_set" / version
    out.mkdir(parents=True, exist_ok=True)
    for part, n in ROWS.items():
        x = rng.normal(size=(n, len(columns))).astype(np.float32)
        labels = _labels(settings, x, rng)
        arrays = {"customer_id": np.arange(n, dtype=np.int64), "month": np.array([MONTHS[part]] * n)}
        arrays.update({c: x[:, j] for j, c in enumerate(columns)})
        arrays.update({f"label__{k}": v for k, v in labels.items()})
        pq.write_table(pa.table(arrays), out / f"{part}.parquet")
        mask = np.arange(12)[None, :] >= rng.integers(0, 11, size=(n, 1))
        sequence = np.where(mask[..., None], rng.normal(size=(n, 12, 11)), 0).astype(np.float32)
        birth = rng.random((n, 4, 16)).astype(np.float32)
        diagrams = np.stack([birth, birth + rng.random((n, 4, 16)).astype(np.float32)], axis=-1)
        save_side(SideInputs(sequence, mask, diagrams, np.ones((n, 4, 16), bool)), out, part)
    schema = {"version": version, "state_version": None, "columns": columns, "groups": groups, "log_columns": [],
              "experts": {}, "tasks": [{"name": t.name, "type": t.type} for t in settings.tasks],
              "split": {}, "rows": ROWS, "normalizer": {},
              "side": {"sequence_shape": [12, 11], "diagram_shape": [4, 16]}}
    (out / "feature_schema.json").write_text(json.dumps(schema))
    (out.parent / "CURRENT").write_text(version)
    return out


@pytest.fixture
def tiny_env(tmp_path: Path, config_copy: Path, monkeypatch) -> Settings:
    """An isolated work directory with the tiny training set and a 4-epoch, small-batch teacher config."""
    teacher = yaml.safe_load((config_copy / "teacher.yaml").read_text())
    teacher["train"].update(epochs=4, batch_size=128, eval_rows=600)
    teacher["baselines"]["lightgbm"].update(n_estimators=15, early_stopping_rounds=5)
    (config_copy / "teacher.yaml").write_text(yaml.safe_dump(teacher))
    monkeypatch.setenv("FINAI_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("FINAI_CONFIG_DIR", str(config_copy))
    settings = load_settings()
    write_training_set(settings)
    return settings
