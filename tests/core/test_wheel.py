"""An installed wheel runs the pipeline outside the checkout: every file it needs is package data."""

import os
import subprocess
import sys

import pytest

from finai_models.config import REPO_ROOT

pytestmark = pytest.mark.slow


def test_the_installed_wheel_runs_the_raw_stage_outside_the_checkout(tmp_path):
    wheels, site, elsewhere = tmp_path / "wheels", tmp_path / "site", tmp_path / "elsewhere"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO_ROOT)], check=True, timeout=600)
    (wheel,) = wheels.glob("finai-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)], check=True, timeout=600)
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FINAI_", "DAGSTER_"))}
    env.update(PYTHONPATH=str(site), DAGSTER_HOME=str(elsewhere / "dagster_home"))   # the wheel before the checkout

    where = subprocess.run([sys.executable, "-c", "import finai_assets, finai_models, finai_serving as s; "
                            "print(finai_assets.__file__, finai_models.__file__, s.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.count(str(site)) == 3 and str(REPO_ROOT) not in where.stdout, where.stdout

    done = subprocess.run([str(site / "bin" / "finai-pipeline"), "--until", "raw", "--quiet", "--months",
                           "2023-01..2023-02"], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    assert "ran raw for 2 months" in done.stdout
    assert (elsewhere / ".finai" / "warehouse.duckdb").is_file()        # the default work directory is the cwd's
    assert not (site / ".finai").exists()
