"""The new-raw-month sensor and the monthly schedule, on a raw folder and on an S3 prefix (moto).

What they request is checked here without running anything; ``test_monthly_operations`` runs
what they request on a served world.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

import boto3
import dagster as dg
import pytest

from finai_assets.defs.operations.sensors import monthly_refresh_schedule, new_raw_month
from finai_assets.defs.resources import FinAIConfig, RawSource
from finai_models.data.raw_schema import TABLES

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

REGION = "ap-northeast-2"


def _drop(raw: Path, month: str, tables=TABLES, content: bytes = b"parquet") -> None:
    for table in tables:
        (raw / table).mkdir(parents=True, exist_ok=True)
        (raw / table / f"{month}.parquet").write_bytes(content)


def _tick(instance, raw_source: RawSource, workdir: Path, cursor: str | None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={
        "finai": FinAIConfig(workdir=str(workdir)), "raw_source": raw_source})
    return new_raw_month(context)


@pytest.fixture
def raw(tmp_path: Path) -> Path:
    folder = tmp_path / "data" / "raw" / "synthetic"
    for month in ("2025-07", "2025-08"):
        _drop(folder, month)
    return folder


def test_the_sensor_records_history_then_requests_each_new_or_replaced_month(instance, raw, tmp_path):
    source = RawSource()
    first = _tick(instance, source, tmp_path, None)
    assert not first.run_requests and "2 complete months" in first.skip_reason.skip_message

    _drop(raw, "2025-09", tables=TABLES[:2])                      # half a month: not yet
    second = _tick(instance, source, tmp_path, first.cursor)
    assert not second.run_requests

    _drop(raw, "2025-09", tables=TABLES[2:])                      # the last table arrives
    third = _tick(instance, source, tmp_path, second.cursor)
    assert [r.partition_key for r in third.run_requests] == ["2025-09"]
    assert third.run_requests[0].tags["finai/trigger"] == "new_raw_month"
    assert not _tick(instance, source, tmp_path, third.cursor).run_requests     # nothing new: nothing asked

    time.sleep(0.01)
    _drop(raw, "2025-08", tables=TABLES[:1], content=b"corrected extract")      # a replaced file
    fourth = _tick(instance, source, tmp_path, third.cursor)
    assert [r.partition_key for r in fourth.run_requests] == ["2025-08"]
    assert fourth.run_requests[0].run_key != f"2025-08:{json.loads(third.cursor)['2025-08']}"


def test_a_month_outside_the_configured_months_is_named_not_requested(instance, raw, tmp_path, caplog):
    source = RawSource()
    first = _tick(instance, source, tmp_path, None)
    _drop(raw, "2031-01")
    result = _tick(instance, source, tmp_path, first.cursor)
    assert not result.run_requests
    assert "2031-01" in json.loads(result.cursor)


def test_the_schedule_refreshes_the_newest_complete_month(raw, tmp_path):
    _drop(raw, "2025-09", tables=TABLES[:1])                      # incomplete: not the newest
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2025, 10, 2, 3), resources={
        "finai": FinAIConfig(workdir=str(tmp_path)), "raw_source": RawSource()})
    request = monthly_refresh_schedule(context)
    assert request.partition_key == "2025-08" and request.tags["finai/trigger"] == "monthly_schedule"
    assert monthly_refresh_schedule.cron_schedule == "0 3 2 * *"

    empty = dg.build_schedule_context(scheduled_execution_time=datetime(2025, 10, 2, 3), resources={
        "finai": FinAIConfig(workdir=str(tmp_path / "nothing")), "raw_source": RawSource()})
    assert isinstance(monthly_refresh_schedule(empty), dg.SkipReason)


def test_an_s3_prefix_is_watched_and_its_files_fetched(instance, tmp_path, moto_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION)
    s3.create_bucket(Bucket="finai-raw", CreateBucketConfiguration={"LocationConstraint": REGION})
    source = RawSource(kind="s3", bucket="finai-raw", prefix="extracts", endpoint_url=moto_endpoint,
                       region_name=REGION)

    def put(month: str, body: bytes = b"month") -> None:
        for table in TABLES:
            s3.put_object(Bucket="finai-raw", Key=f"extracts/{table}/{month}.parquet", Body=body)

    put("2025-08")
    first = _tick(instance, source, tmp_path, None)
    put("2025-09")
    s3.put_object(Bucket="finai-raw", Key="extracts/notes/readme.txt", Body=b"ignored")
    second = _tick(instance, source, tmp_path, first.cursor)
    assert [r.partition_key for r in second.run_requests] == ["2025-09"]

    raw = tmp_path / "raw"
    source.fetch(raw, "customers", "2025-09")
    assert (raw / "customers" / "2025-09.parquet").read_bytes() == b"month"
    stamp = os.stat(raw / "customers" / "2025-09.parquet").st_mtime_ns
    source.fetch(raw, "customers", "2025-09")                     # unchanged: not downloaded again
    assert os.stat(raw / "customers" / "2025-09.parquet").st_mtime_ns == stamp
    put("2025-09", b"corrected")
    source.fetch(raw, "customers", "2025-09")
    assert (raw / "customers" / "2025-09.parquet").read_bytes() == b"corrected"
    assert [r.partition_key for r in _tick(instance, source, tmp_path, second.cursor).run_requests] == ["2025-09"]

    with pytest.raises(ValueError, match="needs a bucket"):
        RawSource(kind="s3").months(raw)
