"""The month's checklist (``configs/checklist.yaml``) judged on what the instance recorded.

Each item's evidence is the month's partition of its asset (or the unpartitioned asset): a metadata
value of the latest materialization, or the pass flag of the latest finished evaluation of a check.
Nothing recorded is ``UNKNOWN``, which fails the item (``finai_models.ops.checklist``)."""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from finai_assets.defs.evidence import latest_check, latest_metadata
from finai_models.ops.checklist import Item, ItemResult, judge


def evidence_value(instance: dg.DagsterInstance, item: Item, month: str) -> object:
    """The value ``item`` judges: the month's record (``scope: month``) or the latest (``scope: latest``),
    never another month's record in place of a missing one."""
    key = dg.AssetKey(item.evidence.asset.split("/"))
    partition = month if item.evidence.scope == "month" else None
    if item.evidence.check is not None:
        record = latest_check(instance, dg.AssetCheckKey(key, item.evidence.check), partition)
        return None if record is None or record.evaluation is None else bool(record.evaluation.passed)
    metadata = latest_metadata(instance, key, partition)
    return None if metadata is None else metadata.get(item.evidence.metadata)


def judge_month(instance: dg.DagsterInstance, items: Sequence[Item], month: str) -> list[ItemResult]:
    """Every item's verdict for ``month``, in checklist order."""
    return [judge(item, evidence_value(instance, item, month)) for item in items]
