"""The teacher materializes from the UI: a real ``dagster dev`` on loopback, driven through the same
GraphQL mutation the UI's "Materialize" button sends, with the run launched and queued by the
webserver and the daemon (not in-process)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from finai_assets.instance import INSTANCE_TEMPLATE
from finai_models.config import REPO_ROOT

MONTH = "2025-12"
LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}"""
RUN = "query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }"
MATERIALIZATIONS = """
query Materializations($partition: String!) {
  assetOrError(assetKey: {path: ["teacher", "ple"]}) {
    ... on Asset { assetMaterializations(partitions: [$partition]) {
      partition metadataEntries { label ... on FloatMetadataEntry { floatValue } } } }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _graphql(url: str, query: str, **variables) -> dict:
    body = json.dumps({"query": query, "variables": variables}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        doc = json.load(response)
    assert "errors" not in doc, doc["errors"]
    return doc["data"]


def _wait(predicate, seconds: float, what: str, log: Path):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(1)
    raise AssertionError(f"{what} within {seconds:.0f} s; dagster dev said:\n{log.read_text()[-4000:]}")


def test_teacher_materializes_from_the_ui(tiny_env, tmp_path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(INSTANCE_TEMPLATE, home / "dagster.yaml")
    port, log = _free_port(), tmp_path / "dagster_dev.log"
    url = f"http://127.0.0.1:{port}/graphql"
    dagster = Path(sys.executable).with_name("dagster")
    with log.open("w") as out:
        server = subprocess.Popen([str(dagster), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                                  cwd=REPO_ROOT, env={**os.environ, "DAGSTER_HOME": str(home)}, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def ready() -> bool:
            try:
                return bool(_graphql(url, "{ version }"))
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        _wait(ready, 180, "the webserver did not answer", log)
        launched = _graphql(url, LAUNCH, params={
            "selector": {"repositoryLocationName": "finai", "repositoryName": "__repository__",
                         "pipelineName": "__ASSET_JOB", "assetSelection": [{"path": ["teacher", "ple"]}]},
            "mode": "default",
            "executionMetadata": {"tags": [{"key": "dagster/partition", "value": MONTH}]},
        })["launchPipelineExecution"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        run_id = launched["run"]["runId"]

        def finished() -> str | None:
            status = _graphql(url, RUN, id=run_id)["runOrError"]["status"]
            return status if status in ("SUCCESS", "FAILURE", "CANCELED") else None

        assert _wait(finished, 420, "the run did not finish", log) == "SUCCESS"
        (event,) = _graphql(url, MATERIALIZATIONS, partition=MONTH)["assetOrError"]["assetMaterializations"]
        metadata = {e["label"]: e.get("floatValue") for e in event["metadataEntries"]}
        assert event["partition"] == MONTH
        assert metadata["test_mean_binary_auc"] > 0.55
        assert "gate_weights" in metadata
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
