"""The month's checklist (``configs/checklist.yaml``) judged on what the instance recorded.

Each item's evidence is the month's partition of its asset (or the unpartitioned asset): a metadata
value of the latest materialization, or the pass flag of the latest finished evaluation of a check.
Nothing recorded is ``UNKNOWN``, which fails the item (``finai_models.ops.checklist``)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import dagster as dg

from finai_assets.defs.evidence import latest_check, latest_metadata
from finai_models.ops.checklist import Item, ItemResult, Verdict, judge


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


def status_line(results: Sequence[ItemResult]) -> str:
    """Per agent, how many items passed, warned, failed or had no evidence; the failed and unknown named."""
    parts = []
    for agent in sorted({r.item.agent for r in results}, reverse=True):        # ops, then audit
        mine = [r for r in results if r.item.agent == agent]
        counts = Counter(r.verdict for r in mine)
        bad = [f"{r.item.id} {r.verdict.lower()}" for r in mine if not r.verdict.passed]
        parts.append(f"{agent} " + "/".join(f"{counts[v]} {v.lower()}" for v in Verdict)
                     + (f" ({', '.join(bad)})" if bad else ""))
    return "checklist " + "; ".join(parts)
