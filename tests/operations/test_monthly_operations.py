"""Three months arrive one after another and the graph refreshes month by month, as operators run it.

Each month's files are dropped into the raw folder; the new-month sensor is evaluated and the run it
requests (``monthly_refresh``) is executed on the world's instance; then the monthly schedule and
the drift-retrain sensor are evaluated. Drift is planted in the second and third months (card
spending five times higher), and the world's config asks for a retrain after two critical months.
A planted unfair rule then fails the fairness gate and stops the release, and the run-failure
sensor records the alert.
"""

from __future__ import annotations

import json
from datetime import datetime

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from finai_assets.defs.operations.sensors import (
    drift_retrain,
    monthly_refresh_schedule,
    new_raw_month,
    run_failure_alerts,
)
from finai_assets.defs.resources import FinAIConfig, RawSource
from finai_models.artifacts import ArtifactPaths

from .conftest import ARRIVING, World

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

DRIFTED = ARRIVING[1:]
REFRESHED = {"raw/customers", "raw/monthly_snapshots", "raw/card_transactions", "phase0/month_inputs",
             "labels/labels", "serving/batch", "serving/bundle", "monitoring/recommendations",
             "monitoring/fairness", "serving/release", "monitoring/drift", "governance/model_card"}


def _plant_drift(world: World, month: str) -> None:
    path = world.staging / "card_transactions" / f"{month}.parquet"
    table = pq.read_table(path)
    amount = table.column("amount").to_numpy() * 5.0
    pq.write_table(table.set_column(table.schema.get_field_index("amount"), "amount", pa.array(amount)), path)


def _resources() -> dict:
    return {"finai": FinAIConfig(), "raw_source": RawSource()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def _drift_sensor(world: World, cursor: str | None):
    """One tick of ``drift_retrain``: its answer for the newest drift materialization, and the new cursor."""
    context = dg.build_sensor_context(instance=world.instance, cursor=cursor, definitions=world.defs)
    (answer,) = list(drift_retrain(context))
    return answer, context.cursor


@pytest.fixture(scope="module")
def arrived(world: World) -> dict:
    """Drop the three months one by one; run what the sensor asks; record everything."""
    for month in DRIFTED:
        _plant_drift(world, month)
    out = {"requests": {}, "runs": {}, "retrain": {}, "reports": {}}
    first = new_raw_month(dg.build_sensor_context(instance=world.instance, cursor=None, resources=_resources()))
    out["first"] = first
    cursor, drift_cursor = first.cursor, None
    _, drift_cursor = _drift_sensor(world, drift_cursor)
    for month in ARRIVING:
        world.drop(month)
        tick = new_raw_month(dg.build_sensor_context(instance=world.instance, cursor=cursor, resources=_resources()))
        cursor = tick.cursor
        out["requests"][month] = tick.run_requests
        (request,) = tick.run_requests
        out["runs"][month] = world.run("monthly_refresh", request.partition_key, tags=request.tags)
        out["retrain"][month], drift_cursor = _drift_sensor(world, drift_cursor)
        path = ArtifactPaths.of(world.settings).drift_report(month)
        out["reports"][month] = json.loads(path.read_text())
    out["schedule"] = monthly_refresh_schedule(dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 2, 3), resources=_resources()))
    return out


def test_three_months_arrive_and_refresh_month_by_month(world, arrived):
    assert not arrived["first"].run_requests                          # history was recorded, not re-run
    for month in ARRIVING:
        (request,) = arrived["requests"][month]
        assert request.partition_key == month and request.job_name in (None, "monthly_refresh")
        result = arrived["runs"][month]
        assert result.success, {n: e.metadata for n, e in _checks(result).items() if not e.passed}
        done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        assert done >= REFRESHED and len(done) == len(REFRESHED) + len(world.settings.feature_groups)
        blocking = [n for n, e in _checks(result).items() if n in ("bundle_answers", "recommendations_fair_by_gender",
                                                                   "recommendations_fair_by_age_band")]
        assert len(blocking) == 3 and all(_checks(result)[n].passed for n in blocking)
        assert ArtifactPaths.of(world.settings).bundle(month).is_file()
        release = result.asset_materializations_for_node("serving__release")[0].metadata
        assert release["uri"].value.endswith(f"finai-{month}.zip")
    reports = arrived["reports"]
    assert [reports[m]["previous_month"] for m in ARRIVING] == [None, *ARRIVING[:-1]]
    assert reports[ARRIVING[0]]["prediction_status"] == "not_available"
    assert reports[ARRIVING[1]]["predictions"]["available"]
    assert arrived["schedule"].partition_key == ARRIVING[-1]          # the newest month, on the 2nd


def test_planted_drift_fails_the_drift_check_and_requests_a_retrain(arrived):
    clean = _checks(arrived["runs"][ARRIVING[0]])["feature_psi_within_limits"]
    assert clean.passed or clean.severity == dg.AssetCheckSeverity.WARN     # 20 months after training: a warning
    for month in DRIFTED:
        check = _checks(arrived["runs"][month])["feature_psi_within_limits"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        assert arrived["runs"][month].success                             # drift alarms, it does not block
        top = arrived["reports"][month]["features"]["top"]
        assert top[0]["group"] in ("txn_rolling_stats", "txn_behavior", "txn_lag_tensor", "model_derived",
                                   "mamba_temporal", "hmm_states"), top[:3]
    assert [arrived["reports"][m]["critical_streak"] for m in ARRIVING] == [0, 1, 2]
    assert isinstance(arrived["retrain"][ARRIVING[1]], dg.SkipReason)      # one critical month: not yet
    request = arrived["retrain"][ARRIVING[2]]
    assert isinstance(request, dg.RunRequest), request
    assert (request.partition_key, request.run_key) == (ARRIVING[2], f"retrain-{ARRIVING[2]}")
    assert request.tags["finai/trigger"] == "drift" and request.tags["finai/critical_streak"] == "2"


def test_the_model_card_renders_with_plots_and_no_empty_section(world, arrived):
    month = ARRIVING[-1]
    result = arrived["runs"][month]
    assert _checks(result)["model_card_complete"].passed
    meta = result.asset_materializations_for_node("governance__model_card")[0].metadata
    assert meta["empty_sections"].value == [] and meta["plots"].value >= 5
    folder = ArtifactPaths.of(world.settings).model_card(month)
    html = (folder / "model_card.html").read_text()
    facts = json.loads((folder / "facts.json").read_text())
    assert html.count("data:image/png;base64,") == meta["plots"].value
    for heading in ("Annex IV", "금융분야", "Data lineage", "Fairness", "Drift", "Gate weights"):
        assert heading in html, heading
    assert facts["lineage"]["raw_files"][0]["sha256"][:12] in html
    assert f"{facts['drift']['features']['max_psi']:.3f}" in html
    assert facts["model"]["champion_month"] == "2025-09" and "2025-09" in html
    recorded = {(c["check"], c["partition"]) for c in facts["checks"]}
    assert {("bundle_answers", month), ("feature_psi_within_limits", month), ("labels_not_in_features", month),
            ("student_fidelity", "2025-09|churn_signal"), ("no_dead_feature_group", None)} <= recorded


SERVED = [["serving", "batch"], ["serving", "bundle"], ["monitoring", "recommendations"], ["monitoring", "fairness"],
          ["serving", "release"], ["monitoring", "drift"], ["governance", "model_card"]]


def _automation(world: World, cursor=None, hour: int = 3):
    return dg.evaluate_automation_conditions(defs=world.defs, instance=world.instance, cursor=cursor,
                                             evaluation_time=datetime(2026, 1, 2, hour))


def test_a_new_champion_refreshes_the_newest_month_by_automation(world, arrived):
    first = _automation(world)
    assert first.total_requested == 0                     # everything of the newest month is up to date
    assert world.run("promote", "2025-09", assets=[dg.AssetKey(["distill", "champion"])]).success
    second = _automation(world, first.cursor)
    requested = {k.to_user_string(): second.get_requested_partitions(k) for k in map(dg.AssetKey, SERVED)}
    assert requested == {"/".join(k): {ARRIVING[-1]} for k in SERVED}, requested   # one chain, newest month only
    assert second.total_requested == len(SERVED)


def test_a_planted_unfair_rule_fails_fairness_stops_the_release_and_alerts(world, arrived):
    month = ARRIVING[-1]
    before = _automation(world, hour=4)
    serving = world.settings.config_dir / "serving.yaml"
    original = serving.read_text()
    doc = yaml.safe_load(original)
    for product in doc["catalogue"]:
        if product["id"] == "e_account":
            product["min_age"] = 50                      # the mobile account only for the over-50s
    serving.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    try:
        result = world.run("monthly_refresh", month)
    finally:
        serving.write_text(original)
    assert not result.success
    checks = _checks(result)
    age = checks["recommendations_fair_by_age_band"]
    assert not age.passed and "e_account" in " ".join(age.metadata["violations"].value)
    done = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert "serving/release" not in done                              # the unfair month is not published
    assert {"monitoring/drift", "governance/model_card"} <= done       # but it is monitored and documented
    card = (ArtifactPaths.of(world.settings).model_card(month) / "model_card.html").read_text()
    assert "VIOLATION" in card and "e_account" in card
    facts = json.loads((ArtifactPaths.of(world.settings).model_card(month) / "facts.json").read_text())
    (listed,) = [c for c in facts["checks"] if c["check"] == "recommendations_fair_by_age_band"]
    assert listed.get("pending") or listed["passed"] is False, listed     # never last month's pass

    context = dg.build_run_status_sensor_context(
        sensor_name="run_failure_alerts", dagster_instance=world.instance,
        dagster_run=world.instance.get_run_by_id(result.run_id), dagster_event=result.get_run_failure_event(),
        resources={"finai": FinAIConfig()}).for_run_failure()
    run_failure_alerts(context)
    alerts = (world.settings.workdir / "alerts" / "alerts.jsonl").read_text().splitlines()
    alert = json.loads(alerts[-1])
    assert alert["run_id"] == result.run_id and alert["partition"] == month
    assert "monitoring/fairness:recommendations_fair_by_age_band" in alert["failed_checks"]

    after = _automation(world, before.cursor, hour=4)   # its inputs changed, but a blocking check failed
    assert not after.get_requested_partitions(dg.AssetKey(["serving", "release"]))
