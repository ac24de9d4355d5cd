"""The teacher materializes from the UI: a real ``dagster dev`` on loopback, driven through the same
GraphQL mutation the UI's "Materialize" button sends, with the run launched and queued by the
webserver and the daemon (not in-process)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

MONTH = "2025-12"
MATERIALIZATIONS = """
query Materializations($partition: String!) {
  assetOrError(assetKey: {path: ["teacher", "ple"]}) {
    ... on Asset { assetMaterializations(partitions: [$partition]) {
      partition metadataEntries { label ... on FloatMetadataEntry { floatValue } } } }
  }
}"""


def test_teacher_materializes_from_the_ui(dagster_dev):
    run_id = dagster_dev.launch(["teacher", "ple"], MONTH)
    assert dagster_dev.wait_for_run(run_id, 420) == "SUCCESS"
    (event,) = dagster_dev.graphql(MATERIALIZATIONS, partition=MONTH)["assetOrError"]["assetMaterializations"]
    metadata = {e["label"]: e.get("floatValue") for e in event["metadataEntries"]}
    assert event["partition"] == MONTH
    assert metadata["test_mean_binary_auc"] > 0.55
    assert "gate_weights" in metadata
