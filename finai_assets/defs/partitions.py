"""Partitions shared by every asset, job and schedule: snapshot months (``YYYY-MM``) and month x task."""

import dagster as dg

from finai_assets.settings import settings
from finai_models import months as M

_start, _end = settings().months

snapshot_months = dg.MonthlyPartitionsDefinition(
    start_date=_start, end_date=M.shift(_end, 1), fmt="%Y-%m", end_offset=0,
)

# One per task of configs/tasks.yaml, and the month x task grid the students are materialized on.
tasks = dg.StaticPartitionsDefinition([t.name for t in settings().tasks])
student_months_tasks = dg.MultiPartitionsDefinition({"month": snapshot_months, "task": tasks})
