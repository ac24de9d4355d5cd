"""One owner for artifact paths and pointers: a killed pointer write leaves the previous version."""

import ast
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from finai_models.artifacts import ArtifactPaths, current, current_version, set_current
from finai_models.config import REPO_ROOT
from finai_models.errors import FinAIError

KILL_BEFORE_RENAME = """
import os, signal, sys
from pathlib import Path
from finai_models import artifacts

def killed(src, dst):            # the process dies after the temp file is written, before the rename
    os.kill(os.getpid(), signal.SIGKILL)

artifacts.os.replace = killed
artifacts.set_current(Path(sys.argv[1]), "v2")
"""


def test_a_pointer_write_killed_before_its_rename_leaves_readers_on_the_previous_version(tmp_path):
    root = tmp_path / "runs"
    for version in ("v1", "v2"):
        (root / version).mkdir(parents=True)
    set_current(root, "v1")
    done = subprocess.run([sys.executable, "-c", KILL_BEFORE_RENAME, str(root)], capture_output=True)
    assert done.returncode == -signal.SIGKILL
    assert (root / "CURRENT.tmp").read_text() == "v2"          # the new pointer was written, never renamed
    assert current(root) == root / "v1"
    set_current(root, "v2")                                    # the next write goes over the leftover
    assert current(root) == root / "v2" and not (root / "CURRENT.tmp").exists()


def test_a_pointer_names_only_a_finished_folder_and_reading_none_says_what_to_do(tmp_path):
    with pytest.raises(FinAIError, match="no such folder"):
        set_current(tmp_path, "never-written")
    assert current_version(tmp_path) is None
    with pytest.raises(FinAIError, match="no finished training set under .*materialize training/training_set first"):
        ArtifactPaths(tmp_path, tmp_path).current_training_set()


def _owners(check) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for package in ("finai_models", "finai_assets", "finai_serving", "benchmarks", "tests"):
        for path in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if check(node):
                    found.setdefault(str(path.relative_to(REPO_ROOT)), []).append(str(node.lineno))
    return found


def test_only_the_artifacts_module_writes_path_formulas_and_pointers():
    """The pointer's name and the artifacts root are spelled in finai_models/artifacts.py alone; everything
    else asks ``ArtifactPaths`` (this test's own strings excepted)."""
    owner = {"finai_models/artifacts.py", "tests/core/test_artifacts.py"}
    pointer = _owners(lambda n: isinstance(n, ast.Constant) and n.value == "CURRENT")
    root = _owners(lambda n: isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "path"
                   and any(isinstance(a, ast.Constant) and a.value == "artifacts" for a in n.args))
    assert set(pointer) <= owner, pointer
    assert set(root) <= owner, root
    assert Path(REPO_ROOT / "finai_models/artifacts.py").is_file()
