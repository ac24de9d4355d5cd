"""The layering rules are import-linter contracts (pyproject.toml); each one fails on a planted import."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from finai_models.config import REPO_ROOT

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", "--config", str(root / "pyproject.toml")], cwd=root,
                          env={"PATH": str(LINT.parent), "PYTHONPATH": str(root)}, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("layering")
    for package in ("finai_models", "finai_serving", "finai_assets"):
        shutil.copytree(REPO_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def test_the_repository_keeps_every_contract(tree):
    done = _lint(tree)
    assert done.returncode == 0, done.stdout[-2000:]


@pytest.mark.parametrize(("module", "planted", "contract"), [
    ("finai_assets/defs/raw/assets.py", "import finai_assets.defs.governance.assets", "each layer imports only"),
    ("finai_assets/defs/serving/assets.py", "import finai_assets.defs.monitoring.assets", "each layer imports only"),
    ("finai_models/months.py", "import dagster", "never imports Dagster"),
    ("finai_serving/gates.py", "import torch", "imports neither Dagster, torch"),
    ("finai_serving/gates.py", "import finai_models.months", "imports neither Dagster, torch"),
])
def test_a_planted_import_breaks_its_contract(tree, module, planted, contract):
    path = tree / module
    original = path.read_text()
    try:
        path.write_text(original + f"\n{planted}  # planted by the test\n")
        done = _lint(tree)
    finally:
        path.write_text(original)
    assert done.returncode != 0
    broken = [line for line in done.stdout.splitlines() if "BROKEN" in line or contract in line]
    assert any(contract in line for line in broken), done.stdout[-2000:]
    assert "1 broken" in done.stdout, done.stdout[-2000:]
