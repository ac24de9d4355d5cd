"""The local Dagster instance home: every script and test uses one with telemetry off."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

INSTANCE_TEMPLATE = Path(__file__).with_name("dagster.yaml")     # package data: an installed wheel carries it


def ensure_dagster_home(default: Path) -> Path:
    """Use $DAGSTER_HOME, else ``default``; make sure it holds our dagster.yaml."""
    home = Path(os.environ.get("DAGSTER_HOME") or default).resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    if not target.exists():
        shutil.copyfile(INSTANCE_TEMPLATE, target)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


if __name__ == "__main__":
    from finai_models.config import load_settings

    print(ensure_dagster_home(load_settings().path("dagster_home")))
