"""The checklist judged on a real Dagster instance: metadata and check evidence per month, UNKNOWN when absent."""

import dagster as dg

from finai_assets.defs.operations.checklist import judge_month, status_line
from finai_models.ops.checklist import Item, Verdict

MONTHS = dg.StaticPartitionsDefinition(["2025-01", "2025-02"])


@dg.asset(key=["monitoring", "drift"], partitions_def=MONTHS,
          check_specs=[dg.AssetCheckSpec("psi_ok", asset=["monitoring", "drift"], partitions_def=MONTHS)])
def drift(context: dg.AssetExecutionContext):
    psi = {"2025-01": 0.05, "2025-02": 0.4}[context.partition_key]
    yield dg.MaterializeResult(metadata={"max_feature_psi": psi},
                               check_results=[dg.AssetCheckResult(check_name="psi_ok", passed=psi < 0.25)])


def _items() -> list[Item]:
    base = {"stage": "recommendation", "agent": "ops", "description": "d"}
    return [Item.model_validate({**base, "id": "psi", "evidence": {"asset": "monitoring/drift",
                                 "metadata": "max_feature_psi"}, "direction": "max", "warn": 0.1, "fail": 0.25}),
            Item.model_validate({**base, "id": "check", "evidence": {"asset": "monitoring/drift", "check": "psi_ok"},
                                 "expect": True}),
            Item.model_validate({**base, "id": "absent", "evidence": {"asset": "serving/bundle",
                                 "metadata": "unzipped_mb"}, "direction": "max", "fail": 250}),
            Item.model_validate({**base, "id": "absent_key", "evidence": {"asset": "monitoring/drift",
                                 "metadata": "no_such_key"}, "direction": "max", "fail": 1}),
            Item.model_validate({**base, "id": "latest", "evidence": {"asset": "monitoring/drift",
                                 "metadata": "max_feature_psi", "scope": "latest"}, "direction": "max", "fail": 0.25})]


def test_each_month_is_judged_on_its_own_partition_and_missing_evidence_is_unknown(instance):
    assert {r.verdict for r in judge_month(instance, _items(), "2025-01")} == {Verdict.UNKNOWN}   # nothing yet
    for month in MONTHS.get_partition_keys():
        assert dg.materialize([drift], instance=instance, partition_key=month).success
    verdicts = {m: {r.item.id: r.verdict for r in judge_month(instance, _items(), m)}
                for m in MONTHS.get_partition_keys()}
    assert verdicts["2025-01"] == {"psi": Verdict.PASS, "check": Verdict.PASS, "absent": Verdict.UNKNOWN,
                                   "absent_key": Verdict.UNKNOWN, "latest": Verdict.FAIL}   # latest = 2025-02
    assert verdicts["2025-02"]["psi"] is Verdict.FAIL and verdicts["2025-02"]["check"] is Verdict.FAIL
    assert not any(v.passed for v in (verdicts["2025-02"]["absent"], verdicts["2025-02"]["absent_key"]))
    line = status_line(judge_month(instance, _items(), "2025-02"))
    assert line.startswith("checklist ops 0 pass/0 warn/3 fail/2 unknown (psi fail, check fail, absent unknown")
