"""Distillation from the UI: a real ``dagster dev`` on loopback, driven through the GraphQL mutation
the UI's "Materialize" button sends: the month's soft labels, one month x task student together with
its blocking fidelity check (a multi-partition key, tagged per dimension as the UI tags it), and the
month's promotion, each read back over GraphQL."""

from __future__ import annotations

import pytest

from finai_models.artifacts import ArtifactPaths
from finai_models.distill.config import distill_config
from finai_models.distill.students import train_student

from .test_assets import _teacher

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

MONTH, TASK = "2025-12", "churn_signal"
STUDENT = ["distill", "student"]
MATERIALIZATIONS = """
query Materializations($path: [String!]!, $partition: String!) {
  assetOrError(assetKey: {path: $path}) {
    ... on Asset { assetMaterializations(partitions: [$partition]) {
      runId partition metadataEntries { label ... on TextMetadataEntry { text } } } }
  }
}"""
CHECK_EXECUTIONS = """
query Checks($path: [String!]!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: {path: $path}, checkName: $check, partition: $partition, limit: 10) {
    runId status partition evaluation { success partition metadataEntries { label } }
  }
}"""


def _materializations(dagster_dev, path: list[str], partition: str) -> list[dict]:
    asset = dagster_dev.graphql(MATERIALIZATIONS, path=path, partition=partition)["assetOrError"]
    return asset["assetMaterializations"]


def test_a_month_distils_and_promotes_from_the_ui(tiny_env, dagster_dev):
    _teacher(tiny_env, MONTH)

    run_id = dagster_dev.launch(["distill", "soft_labels"], MONTH)
    assert dagster_dev.wait_for_run(run_id, 300) == "SUCCESS", dagster_dev.errors(run_id)

    partition = f"{MONTH}|{TASK}"
    run_id = dagster_dev.launch(STUDENT, partition, dimensions=("month", "task"), checks=["student_fidelity"])
    assert dagster_dev.wait_for_run(run_id, 300) == "SUCCESS", dagster_dev.errors(run_id)
    (event,) = _materializations(dagster_dev, STUDENT, partition)
    assert (event["runId"], event["partition"]) == (run_id, partition)
    (execution,) = dagster_dev.graphql(CHECK_EXECUTIONS, path=STUDENT, check="student_fidelity",
                                       partition=partition)["assetCheckExecutions"]
    assert (execution["runId"], execution["status"], execution["partition"]) == (run_id, "SUCCEEDED", partition)
    assert execution["evaluation"]["success"], execution["evaluation"]
    assert "tier1_failures" in {e["label"] for e in execution["evaluation"]["metadataEntries"]}

    # promotion weighs every task's student of the month: the other tasks' through the library
    cfg = distill_config(tiny_env)
    paths = ArtifactPaths.of(tiny_env)
    for task in (t.name for t in cfg.tasks if t.name != TASK):
        train_student(cfg, task, paths.student_inputs(MONTH), paths.students(MONTH) / task,
                      log=lambda _m: None)
    run_id = dagster_dev.launch(["distill", "promotion"], MONTH)
    assert dagster_dev.wait_for_run(run_id, 300) == "SUCCESS", dagster_dev.errors(run_id)
    (event,) = _materializations(dagster_dev, ["distill", "promotion"], MONTH)
    metadata = {e["label"]: e.get("text") for e in event["metadataEntries"]}
    assert event["runId"] == run_id
    assert metadata["decision"] == "bootstrap", metadata
