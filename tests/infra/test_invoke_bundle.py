"""finai_assets/invoke_bundle.py: a bundle runs as on Lambda, and a damaged or escaping bundle runs nothing.

The fake bundle's handler reports what its interpreter can import: dagster, torch and yaml are all
installed in this virtualenv, so they stay unimportable only if the subprocess really is clean.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path

import pytest

from finai_assets import invoke_bundle as ib

SCRIPT = Path(ib.__file__)        # run as a script, the way the bundle check and finai-pipeline run it

HANDLER = '''"""Echo handler for the invoker's tests: reports what the clean interpreter can import."""
import importlib
import os
import sys
import time

import numpy

print("fake handler imported")


def handler(event, context):
    action = event.get("action")
    if action == "raise":
        raise ValueError("boom from the fake handler")
    if action == "list":
        return [1, 2]
    if action == "sleep":
        time.sleep(30)
    os.write(1, b"native stdout noise\\n")   # as a C library would: must not corrupt the response
    blocked = []
    for name in ("dagster", "torch", "yaml"):
        try:
            importlib.import_module(name)
        except ImportError:
            blocked.append(name)
    out = {"event": event, "blocked": blocked, "numpy": numpy.__version__, "context": context,
           "sys_path": sys.path, "task_root": os.environ.get("LAMBDA_TASK_ROOT"), "l2a": os.environ.get("FINAI_L2A"),
           "aws_env": sorted(k for k in os.environ if k.startswith("AWS_"))}
    if action == "lightgbm":
        import lightgbm
        out["lightgbm"] = lightgbm.__version__
    return out
'''
FILES = {"finai_serving/__init__.py": b'"""Fake handler package."""\n', "finai_serving/handler.py": HANDLER.encode(),
         "model/students/churn/model.txt": b"tree\n"}
HEARTBEAT = {"action": "heartbeat"}


def make_bundle(path: Path, files: Mapping[str, bytes] = FILES, *, packages: list[str] | None = None,
                manifest: dict | None = None, in_zip: Mapping[str, bytes] | None = None) -> Path:
    """A bundle zip whose manifest lists ``files``; ``in_zip`` overrides or adds entries after the manifest."""
    if manifest is None:
        manifest = {"format": 2, "month": "2024-05",
                    "runtime": {"python": "3.12", "packages": packages or ["numpy", "lightgbm"]},
                    "files": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}}
    with zipfile.ZipFile(path, "w") as z:
        for name, data in {**files, **(in_zip or {})}.items():
            z.writestr(name, data)
        z.writestr(ib.MANIFEST, json.dumps(manifest))
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def test_the_handler_answers_in_a_clean_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "must-not-reach-the-handler")
    for name in ("dagster", "torch", "yaml"):   # installed here, so "blocked" below is the subprocess's doing
        assert importlib.util.find_spec(name) is not None
    task = tmp_path / "task"
    manifest = ib.unpack(make_bundle(tmp_path / "b.zip"), task)
    assert manifest["month"] == "2024-05"
    call = ib.invoke_timed(task, HEARTBEAT, env={"FINAI_L2A": "off"})
    r = call.response
    assert r["event"] == HEARTBEAT and r["context"] is None
    assert r["blocked"] == ["dagster", "torch", "yaml"]
    assert r["numpy"] == importlib.metadata.version("numpy")
    assert r["sys_path"][0] == str(task.resolve()) and r["sys_path"][1].endswith("deps")
    assert not [p for p in r["sys_path"] if "site-packages" in p], r["sys_path"]
    assert r["task_root"] == str(task.resolve()) and r["l2a"] == "off"
    assert r["aws_env"] == []
    assert "fake handler imported" in call.log                # handler prints go to the log, not the response
    assert "native stdout noise" in call.log
    assert 0 < call.import_s < call.cold_start_s < 60
    names = {p.split()[0].lower() for p in call.packages}
    assert {"numpy", "lightgbm", "scipy", "narwhals"} <= names and "dagster" not in names


def test_lightgbm_imports_with_the_requirements_it_pulled_in(tmp_path):
    task = tmp_path / "task"
    ib.unpack(make_bundle(tmp_path / "b.zip"), task)
    assert ib.invoke(task, {"action": "lightgbm"})["lightgbm"] == importlib.metadata.version("lightgbm")


def test_build_deps_links_only_the_runtime_closure(tmp_path):
    deps = tmp_path / "deps"
    included = ib.build_deps(["lightgbm"], deps)
    assert [p.split()[0].lower() for p in included] == ["lightgbm", "narwhals", "numpy", "scipy"]
    numpy_info = f"numpy-{importlib.metadata.version('numpy')}.dist-info"
    for entry in ("numpy", "numpy.libs", "scipy.libs", "lightgbm", numpy_info):
        assert (deps / entry).is_symlink(), entry
    assert not (deps / "dagster").exists() and not (deps / "yaml").exists() and not (deps / "..").is_symlink()


@pytest.mark.parametrize("package, reason", [("no-such-distribution-xyz", "not installed"),
                                             ("numpy<1", "is installed")])
def test_build_deps_refuses_missing_or_mismatched_packages(tmp_path, package, reason):
    with pytest.raises(ib.BundleRefused, match=reason):
        ib.build_deps([package], tmp_path / "deps")


def test_a_changed_byte_is_refused_naming_the_file_and_nothing_runs(tmp_path):
    changed = HANDLER.replace("boom", "bOom").encode()
    bundle = make_bundle(tmp_path / "b.zip", in_zip={"finai_serving/handler.py": changed})
    with pytest.raises(ib.BundleRefused, match="finai_serving/handler.py: SHA-256 differs"):
        ib.unpack(bundle, tmp_path / "task")
    done = run_cli(str(bundle), "--event", json.dumps(HEARTBEAT))
    assert done.returncode == 1 and done.stdout == ""
    assert "bundle refused: finai_serving/handler.py" in done.stderr and "fake handler imported" not in done.stderr


def test_an_unlisted_file_is_refused(tmp_path):
    bundle = make_bundle(tmp_path / "b.zip", in_zip={"finai_serving/sitecustomize.py": b"import os\n"})
    with pytest.raises(ib.BundleRefused, match=r"not in the manifest: \['finai_serving/sitecustomize.py'\]"):
        ib.unpack(bundle, tmp_path / "task")


def test_a_listed_file_missing_from_the_zip_is_refused(tmp_path):
    listed = {**{n: hashlib.sha256(b).hexdigest() for n, b in FILES.items()}, "model/gone.bin": "0" * 64}
    manifest = {"format": 2, "runtime": {"packages": []}, "files": listed}
    with pytest.raises(ib.BundleRefused, match=r"not in the bundle: \['model/gone.bin'\]"):
        ib.unpack(make_bundle(tmp_path / "b.zip", manifest=manifest), tmp_path / "task")


@pytest.mark.parametrize("name", ["../evil", "finai_serving/../../evil", "/tmp/finai-evil", "..\\evil", "C:/evil"])
def test_entries_escaping_the_task_root_are_refused_before_extraction(tmp_path, name):
    bundle = make_bundle(tmp_path / "b.zip", in_zip={name: b"x"})
    with pytest.raises(ib.BundleRefused, match="outside the task root"):
        ib.unpack(bundle, tmp_path / "task")
    assert list((tmp_path / "task").iterdir()) == []


def test_a_non_empty_destination_is_refused(tmp_path):
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "stale.py").write_text("")
    with pytest.raises(ib.BundleRefused, match="not empty"):
        ib.unpack(make_bundle(tmp_path / "b.zip"), tmp_path / "task")


def test_a_file_that_is_not_a_zip_is_refused(tmp_path):
    (tmp_path / "b.zip").write_bytes(b"not a zip")
    with pytest.raises(ib.BundleRefused, match="not a zip"):
        ib.unpack(tmp_path / "b.zip", tmp_path / "task")


@pytest.mark.parametrize("manifest, reason", [
    (None, "no model/manifest.json"),
    ("{not json", "is not JSON"),
    ({"format": 1, "runtime": {"packages": []}, "files": {}}, "format 1"),
    ({"format": 2, "runtime": {}, "files": {}}, "runtime.packages"),
    ({"format": 2, "runtime": {"packages": ["numpy"]}, "files": ["a"]}, "'files' object"),
])
def test_a_bad_manifest_is_refused(tmp_path, manifest, reason):
    with zipfile.ZipFile(tmp_path / "b.zip", "w") as z:
        if manifest is not None:
            z.writestr(ib.MANIFEST, manifest if isinstance(manifest, str) else json.dumps(manifest))
    with pytest.raises(ib.BundleRefused, match=reason):
        ib.unpack(tmp_path / "b.zip", tmp_path / "task")


def test_invoke_verifies_again_so_a_folder_changed_after_unpacking_is_refused(tmp_path):
    task = tmp_path / "task"
    ib.unpack(make_bundle(tmp_path / "b.zip"), task)
    (task / "model" / "students" / "churn" / "model.txt").write_text("edited\n")
    with pytest.raises(ib.BundleRefused, match="model/students/churn/model.txt"):
        ib.invoke(task, HEARTBEAT)


def test_a_raising_handler_fails_with_the_traceback_last_line(tmp_path):
    task = tmp_path / "task"
    bundle = make_bundle(tmp_path / "b.zip")
    ib.unpack(bundle, task)
    with pytest.raises(ib.HandlerFailed, match=r"exit 1\): ValueError: boom from the fake handler") as failed:
        ib.invoke(task, {"action": "raise"})
    assert "Traceback" in failed.value.log
    done = run_cli(str(bundle), "--event", '{"action": "raise"}')
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.rstrip().endswith("ValueError: boom from the fake handler")


def test_a_handler_importing_a_package_outside_the_runtime_fails_at_import(tmp_path):
    files = {**FILES, "finai_serving/handler.py": b"import yaml\n\ndef handler(event, context):\n    return {}\n"}
    ib.unpack(make_bundle(tmp_path / "b.zip", files), tmp_path / "task")
    with pytest.raises(ib.HandlerFailed, match="ModuleNotFoundError: No module named 'yaml'"):
        ib.invoke(tmp_path / "task", HEARTBEAT)


def test_a_response_that_is_not_a_dict_breaks_the_contract(tmp_path):
    ib.unpack(make_bundle(tmp_path / "b.zip"), tmp_path / "task")
    with pytest.raises(ib.HandlerFailed, match="returned list, not a dict"):
        ib.invoke(tmp_path / "task", {"action": "list"})


def test_a_hanging_handler_is_abandoned(tmp_path):
    ib.unpack(make_bundle(tmp_path / "b.zip", packages=["numpy"]), tmp_path / "task")
    with pytest.raises(ib.HandlerFailed, match="no response within 3 s"):
        ib.invoke(tmp_path / "task", {"action": "sleep"}, timeout=3)


def test_the_command_line_prints_the_response_and_the_cold_start(tmp_path):
    bundle = make_bundle(tmp_path / "b.zip")
    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"action": "recommend", "customer_id": "123", "locale": "en"}))
    done = run_cli(str(bundle), "--event-file", str(event_file), "--env", "FINAI_L2A=on")
    assert done.returncode == 0, done.stderr
    response = json.loads(done.stdout)
    assert response["event"]["customer_id"] == "123" and response["l2a"] == "on"
    assert "cold start: " in done.stderr and "deps: " in done.stderr and "lightgbm 4." in done.stderr


@pytest.mark.parametrize("args, code, said", [(["--event", "{bad"], 2, "the event is not JSON"),
                                             (["--event", "{}", "--env", "NOEQUALS"], 2, "is not KEY=VALUE")])
def test_the_command_line_rejects_bad_arguments(tmp_path, args, code, said):
    done = run_cli(str(make_bundle(tmp_path / "b.zip")), *args)
    assert done.returncode == code and said in done.stderr
