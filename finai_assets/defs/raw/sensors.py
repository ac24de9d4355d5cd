"""New raw months start the monthly refresh: a sensor on the raw folder (or S3 prefix) and a schedule.

The sensor requests ``monthly_refresh`` for a month as soon as every table of it has arrived, and
again when any of its files is replaced (the run key carries the files' signature). On its first
evaluation it only records what is already there: history is backfilled on purpose (``make run``
or a UI backfill), not by a sensor flooding the queue. The schedule refreshes the newest complete
month on the 2nd of each month, so a month is refreshed even while the sensor is off.
"""

import json

import dagster as dg

from finai_assets.defs.automation import default_schedule_status, default_status
from finai_assets.defs.jobs import monthly_refresh
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
