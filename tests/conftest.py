"""Test session setup: a private work directory and Dagster home (telemetry off) for every test.

``pytest_configure`` sets the environment before any test module is collected, because the Dagster
definitions those modules import read the settings (and so the work directory) when they load.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from finai_assets.instance import INSTANCE_TEMPLATE, ensure_dagster_home
from finai_models.artifacts import ArtifactPaths, set_current
from finai_models.config import REPO_ROOT, Settings, load_settings
from finai_models.data.generate import generate_synthetic
from finai_models.phase0.schema import SCHEMA_FILE, label_column, schema_for
from finai_models.phase0.side_inputs import SideInputs, save_side
from finai_serving.schema import Side

_SESSION_DIR = Path(tempfile.gettempdir()) / "finai-tests-unset"   # pytest_configure makes the session's own


def pytest_configure(config):
    global _SESSION_DIR
    _SESSION_DIR = Path(tempfile.mkdtemp(prefix="finai-tests-"))
    os.environ["FINAI_WORKDIR"] = str(_SESSION_DIR / "work")
    os.environ.pop("FINAI_DATASET", None)
    os.environ.pop("FINAI_CONFIG_DIR", None)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # torch and LightGBM share 2 cores in one process
    os.environ.pop("DAGSTER_HOME", None)
    ensure_dagster_home(_SESSION_DIR / "dagster_home")     # sets $DAGSTER_HOME


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


@pytest.fixture(scope="session")
def moto_endpoint():
    """A moto server (S3, DynamoDB, ...) on a free loopback port, for the whole session."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


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


def write_training_set(settings: Settings, version: str = "tiny", seed: int = 0, column_name=None,
                       normalizer=None) -> Path:
    """``column_name(group, i)`` names the columns (default ``<group>__<i>``); ``normalizer(columns)``
    gives the schema a normalizer (default the identity); the schema comes from ``schema_for``, as Phase 0's."""
    rng = np.random.default_rng(seed)
    column_name = column_name or (lambda group, i: f"{group}__{i:03d}")
    names = {g.name: [column_name(g.name, i) for i in range(g.dim)] for g in settings.feature_groups}
    raw = [c for group in names.values() for c in group]
    schema = schema_for(settings, names, version, normalizer=normalizer(raw) if normalizer else None, rows=ROWS,
                        side=Side(sequence_shape=(12, 11), diagram_shape=(4, 16)))
    columns = list(schema.columns)
    out = ArtifactPaths.of(settings).training_sets() / version
    out.mkdir(parents=True, exist_ok=True)
    for part, n in ROWS.items():
        x = rng.normal(size=(n, len(columns))).astype(np.float32)
        labels = _labels(settings, x, rng)
        arrays = {"customer_id": np.arange(n, dtype=np.int64), "month": np.array([MONTHS[part]] * n)}
        arrays.update({c: x[:, j] for j, c in enumerate(columns)})
        arrays.update({label_column(k): v for k, v in labels.items()})
        pq.write_table(pa.table(arrays), out / f"{part}.parquet")
        mask = np.arange(12)[None, :] >= rng.integers(0, 11, size=(n, 1))
        sequence = np.where(mask[..., None], rng.normal(size=(n, 12, 11)), 0).astype(np.float32)
        birth = rng.random((n, 4, 16)).astype(np.float32)
        diagrams = np.stack([birth, birth + rng.random((n, 4, 16)).astype(np.float32)], axis=-1)
        save_side(SideInputs(sequence, mask, diagrams, np.ones((n, 4, 16), bool)), out, part)
    schema.save(out / SCHEMA_FILE)
    set_current(out.parent, version)
    return out


@pytest.fixture
def tiny_env(tmp_path: Path, config_copy: Path, monkeypatch) -> Settings:
    """An isolated work directory with the tiny training set and a 6-epoch, small-batch teacher config
    (patience 6: no early stop, so epoch counts are exact; early stopping has its own tests)."""
    teacher = yaml.safe_load((config_copy / "teacher.yaml").read_text())
    teacher["train"].update(epochs=6, patience=6, batch_size=128, eval_rows=600)   # every epoch runs
    teacher["baselines"]["lightgbm"].update(n_estimators=15, early_stopping_rounds=5)
    (config_copy / "teacher.yaml").write_text(yaml.safe_dump(teacher))
    monkeypatch.setenv("FINAI_WORKDIR", str(tmp_path / "work"))
    monkeypatch.setenv("FINAI_CONFIG_DIR", str(config_copy))
    settings = load_settings()
    write_training_set(settings)
    return settings


@pytest.fixture(scope="session")
def serving_bundle(tmp_path_factory) -> dict:
    """A real bundle (tiny teacher, 13 students, monthly batch) built once per session (``bundle_fixture``)."""
    from bundle_fixture import build

    return build(tmp_path_factory.mktemp("serving-bundle"), write_training_set)


# --- a real `dagster dev` on loopback, driven through the GraphQL the UI sends ---------------------

_LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
_RUN = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
_ERRORS = """
query Errors($id: ID!) {
  logsForRun(runId: $id) {
    ... on EventConnection { events { ... on ErrorEvent { error { message } } } }
  }
}"""


class DagsterDev:
    """A ``dagster dev`` webserver (with its daemon) and the GraphQL calls the UI makes to it."""

    def __init__(self, url: str, log: Path):
        self.url, self.log = url, log

    def graphql(self, query: str, **variables) -> dict:
        body = json.dumps({"query": query, "variables": variables}).encode()
        request = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            doc = json.load(response)
        assert "errors" not in doc, doc["errors"]
        return doc["data"]

    def wait(self, predicate, seconds: float, what: str):
        """``predicate()``'s first truthy value within ``seconds``, else fail with the tail of the log."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(1)
        raise AssertionError(f"{what} within {seconds:.0f} s; dagster dev said:\n{self.log.read_text()[-4000:]}")

    def launch(self, asset_path: list[str], partition: str, *, dimensions: Sequence[str] = (),
               checks: Sequence[str] | None = None) -> str:
        """The UI's Materialize of one asset partition; returns the run id.

        ``dimensions``: the dimension names of a multi-partition key ("month|task" -> ("month", "task")):
        the UI tags the run with each dimension's key besides ``dagster/partition``, and Dagster needs
        them (with the joined key alone, ``context.partition_key`` is a plain string, not a
        ``MultiPartitionKey``). ``checks``: the asset's checks to run with it, as the UI lists them;
        None leaves the selection to Dagster (every check of the asset).
        """
        tags = [{"key": "dagster/partition", "value": partition}]
        if dimensions:
            keys = partition.split("|")
            tags += [{"key": f"dagster/partition/{d}", "value": k} for d, k in zip(dimensions, keys, strict=True)]
        selector = {"repositoryLocationName": "finai", "repositoryName": "__repository__",
                    "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": asset_path}]}
        if checks is not None:
            selector["assetCheckSelection"] = [{"assetKey": {"path": asset_path}, "name": c} for c in checks]
        launched = self.graphql(_LAUNCH, params={"selector": selector, "mode": "default",
                                                 "executionMetadata": {"tags": tags}})["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def wait_for_run(self, run_id: str, seconds: float) -> str:
        """The run's final status (SUCCESS, FAILURE or CANCELED)."""
        def finished() -> str | None:
            status = self.graphql(_RUN, id=run_id)["runOrError"]["status"]
            return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

        return self.wait(finished, seconds, f"run {run_id} did not finish")

    def errors(self, run_id: str) -> str:
        """The run's error messages (failed steps, the failed run), for an assertion's message."""
        events = self.graphql(_ERRORS, id=run_id)["logsForRun"].get("events", [])
        return "\n".join(e["error"]["message"] for e in events if e.get("error"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def dagster_dev(tiny_env: Settings, tmp_path: Path):
    """``dagster dev`` on a free loopback port, over ``tiny_env``'s work directory and configs, with a
    fresh Dagster home (telemetry off); stopped (its whole process group) after the test."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    port, log = _free_port(), tmp_path / "dagster_dev.log"
    dev = DagsterDev(f"http://127.0.0.1:{port}/graphql", log)
    dagster = Path(sys.executable).with_name("dagster")
    with log.open("w") as out:
        server = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=REPO_ROOT, env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            try:
                return bool(dev.graphql("{ version }"))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        dev.wait(ready, 180, "the webserver did not answer")
        yield dev
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
