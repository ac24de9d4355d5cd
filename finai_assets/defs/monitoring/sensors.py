"""Operations sensors: drift-requested retraining and an alert record for every failed run.

``drift_retrain`` reads each new ``monitoring/drift`` materialization; when its report says the
month closes a run of critical months (``retrain_after_months``, 3 by default) it requests the
``retrain`` job for that month, once (the run key is the month). ``run_failure_alerts`` appends
one JSON line per failed run - job, partition, failed steps and checks, the error - to the alert
file operators watch (``alerts.path`` in configs/monitoring.yaml), and logs it.
"""

import json
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from finai_assets.defs.automation import default_status
from finai_assets.defs.jobs import retrain
from finai_assets.defs.monitoring.assets import drift
from finai_assets.defs.resources import FinAIConfig
from finai_models.monitoring.config import monitoring_config


@dg.asset_sensor(asset_key=drift.key, job=retrain, default_status=default_status(),
                 description="Critical drift in enough consecutive months -> the retrain job for the newest of them.")
def drift_retrain(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry
                  ) -> dg.RunRequest | dg.SkipReason:
    event = asset_event.dagster_event
    materialization = event.event_specific_data.materialization
    month = materialization.partition
    meta = {k: v.value for k, v in materialization.metadata.items()}
    if not meta.get("retrain_requested"):
        return dg.SkipReason(f"drift {month}: {meta.get('status')} (critical streak {meta.get('critical_streak')})")
    return dg.RunRequest(partition_key=month, run_key=f"retrain-{month}", tags={
        "finai/trigger": "drift", "finai/critical_streak": str(meta["critical_streak"]),
        "finai/drift_run": asset_event.run_id})


def alert_path(finai: FinAIConfig) -> Path:
    s = finai.load()
    return s.workdir / monitoring_config(s)["alerts"]["path"]


@dg.run_failure_sensor(default_status=default_status(), monitor_all_code_locations=False,
                       description="Every failed run -> one JSON line in the alert file (alerts.path) and the log.")
def run_failure_alerts(context: dg.RunFailureSensorContext, finai: FinAIConfig) -> None:
    run = context.dagster_run
    failed_steps = [e.step_key for e in context.get_step_failure_events()]
    records = context.instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed_checks = sorted({f"{r.event_log_entry.dagster_event.event_specific_data.asset_key.to_user_string()}:"
                            f"{r.event_log_entry.dagster_event.event_specific_data.check_name}"
                            for r in records.records
                            if not r.event_log_entry.dagster_event.event_specific_data.passed})
    alert = {"time": datetime.now(UTC).isoformat(timespec="seconds"), "run_id": run.run_id, "job": run.job_name,
             "partition": run.tags.get("dagster/partition"), "trigger": run.tags.get("finai/trigger", "manual"),
             "failed_steps": failed_steps, "failed_checks": failed_checks,
             "message": context.failure_event.message}
    path = alert_path(finai)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(alert) + "\n")
    context.log.error(f"run {run.run_id} of {run.job_name} failed: steps {failed_steps}, checks {failed_checks}")
