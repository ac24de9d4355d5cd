"""Partitions shared by every asset, job and schedule: one per snapshot month (``YYYY-MM``)."""

import dagster as dg

from finai_assets.settings import settings
from finai_models import months as M

_start, _end = settings().months

snapshot_months = dg.MonthlyPartitionsDefinition(
    start_date=_start, end_date=M.shift(_end, 1), fmt="%Y-%m", end_offset=0,
)
