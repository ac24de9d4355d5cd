"""What launches runs by itself: the new-month sensor and the monthly schedule (``monthly_refresh``),
the drift sensor (``retrain``), and an alert record for every failed run.

They live beside the jobs they launch (``jobs.py``), above every domain, so no domain imports upward.

``new_raw_month`` requests ``monthly_refresh`` for a month as soon as every table of it has arrived, and
again when any of its files is replaced (the run key carries the files' signature). On its first
evaluation it only records what is already there: history is backfilled on purpose (``make run``
or a UI backfill), not by a sensor flooding the queue. ``monthly_refresh_schedule`` refreshes the
newest complete month on the 2nd of each month, so a month is refreshed even while the sensor is off.

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

from finai_assets.defs.automation import default_schedule_status, default_status
from finai_assets.defs.monitoring.assets import drift
from finai_assets.defs.operations.jobs import monthly_refresh, retrain
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig, RawSource
from finai_assets.settings import settings
from finai_models.monitoring.config import monitoring_config

AUTOMATION = monitoring_config(settings())["automation"]


def _known_months() -> set[str]:
    return set(snapshot_months.get_partition_keys())


@dg.sensor(job=monthly_refresh, default_status=default_status(),
           minimum_interval_seconds=int(AUTOMATION["sensor_interval_seconds"]),
           description="A new (or replaced) raw month: every table's file present in the raw folder or S3 prefix "
                       "-> monthly_refresh for that month.")
def new_raw_month(context: dg.SensorEvaluationContext, finai: FinAIConfig, raw_source: RawSource
                  ) -> dg.SensorResult | dg.SkipReason:
    s = finai.load()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    now = raw_source.months(s.raw_dir)
    cursor = json.dumps(now, sort_keys=True)
    if not context.cursor:
        return dg.SensorResult(skip_reason=f"first look: {len(now)} complete months already present are recorded, "
                                           "not requested (backfill history explicitly)", cursor=cursor)
    changed = sorted(m for m, sig in now.items() if seen.get(m) != sig)
    partitions = _known_months()
    outside = [m for m in changed if m not in partitions]
    if outside:
        context.log.warning(f"months {outside} arrived but lie outside the configured months "
                            f"{min(partitions)}..{max(partitions)}; extend months.end in the dataset config")
    requests = [dg.RunRequest(partition_key=m, run_key=f"{m}:{now[m]}", tags={"finai/trigger": "new_raw_month"})
                for m in changed if m in partitions]
    if not requests:
        return dg.SensorResult(skip_reason="no new or replaced raw month", cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)


@dg.schedule(job=monthly_refresh, cron_schedule=AUTOMATION["schedule_cron"],
             execution_timezone=AUTOMATION["timezone"], default_status=default_schedule_status(),
             description="The newest complete raw month through the whole monthly graph, once a month.")
def monthly_refresh_schedule(context: dg.ScheduleEvaluationContext, finai: FinAIConfig, raw_source: RawSource
                             ) -> dg.RunRequest | dg.SkipReason:
    s = finai.load()
    months = [m for m in raw_source.months(s.raw_dir) if m in _known_months()]
    if not months:
        return dg.SkipReason(f"no complete raw month in {s.raw_dir} within the configured months")
    tick = context.scheduled_execution_time.strftime("%Y-%m-%d")
    return dg.RunRequest(partition_key=months[-1], run_key=f"{months[-1]}@{tick}",
                         tags={"finai/trigger": "monthly_schedule"})


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
