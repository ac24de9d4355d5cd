"""Test session setup: a private work directory and Dagster home (telemetry off) for every test.

The environment is set before any finai_assets import, because the Dagster definitions read
the settings (and so the work directory) when they load.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_DIR = Path(tempfile.mkdtemp(prefix="finai-tests-"))
os.environ["FINAI_WORKDIR"] = str(_SESSION_DIR / "work")
os.environ["DAGSTER_HOME"] = str(_SESSION_DIR / "dagster_home")
os.environ.pop("FINAI_DATASET", None)
os.environ.pop("FINAI_CONFIG_DIR", None)

from finai_assets.instance import ensure_dagster_home  # noqa: E402
from finai_models.config import REPO_ROOT, Settings, load_settings  # noqa: E402
from finai_models.data.generate import generate_synthetic  # noqa: E402

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
