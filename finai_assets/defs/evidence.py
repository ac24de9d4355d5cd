"""What the instance recorded for a month: an asset's latest materialization metadata and a check's latest
evaluation, per partition. The model card and the operations checklist read evidence only through here."""

from __future__ import annotations

from typing import Any

import dagster as dg


def latest_materialization(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None) -> Any:
    """The record of ``key``'s latest materialization of ``partition`` (``None``: of any); None when none."""
    records = instance.fetch_materializations(
        key if partition is None else dg.AssetRecordsFilter(asset_key=key, asset_partitions=[partition]),
        limit=1).records
    return records[0] if records else None


def latest_metadata(instance: dg.DagsterInstance, key: dg.AssetKey, partition: str | None) -> dict[str, Any] | None:
    """The metadata of ``key``'s latest materialization of ``partition`` (``None``: of any), as plain values;
    None when nothing was materialized there."""
    record = latest_materialization(instance, key, partition)
    if record is None:
        return None
    materialization = record.asset_materialization
    return {k: v.value for k, v in (materialization.metadata or {}).items()} if materialization else None


def latest_check(instance: dg.DagsterInstance, key: dg.AssetCheckKey, partition: str | None,
                 finished_only: bool = True) -> Any:
    """The latest execution record of check ``key`` for ``partition`` (None: never evaluated there).

    Private on purpose: Dagster 1.13 has no public API for a check's evaluations of one partition
    (DagsterInstance exposes materializations by partition, not check executions)."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    where = None if partition is None else PartitionKeyFilter(key=partition)
    status = {Status.SUCCEEDED, Status.FAILED} if finished_only else None
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1, status=status,
                                                                           partition_filter=where)
    return history[0] if history else None


def planned_in_run(record: Any, run_id: str) -> bool:
    """Whether ``record`` is a check this very run has planned and not yet evaluated."""
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    return record is not None and record.run_id == run_id and record.status == Status.PLANNED
