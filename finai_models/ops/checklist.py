"""The operations checklist: items from ``configs/checklist.yaml`` and the verdict of each on its evidence.

An item names the evidence it reads (a metadata key of an asset's materialization, or a check's
result) and how to judge it: ``fail``/``warn`` thresholds in a direction (``max``: the value must
stay at or below them; ``min``: at or above), or an ``expect``ed value. The verdict is a pure
function of the item and the value found, shared by the asset checks and the agents' reports.

Missing evidence is ``UNKNOWN``, and ``UNKNOWN`` fails: an item nobody could evaluate must never
read as healthy (the original system reported missing evidence as GREEN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import model_validator

from finai_models.config_base import ConfigModel, Number, load_model
from finai_models.errors import ConfigError

STAGES = ("ingestion", "phase0", "training", "distillation", "serving", "recommendation", "champion", "audit")


class Verdict(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"
    UNKNOWN = "UNKNOWN"

    @property
    def passed(self) -> bool:
        """Whether the item holds: WARN holds (it is reported), FAIL and UNKNOWN do not."""
        return self in (Verdict.PASS, Verdict.WARN)


class Evidence(ConfigModel):
    """Where an item's value comes from: ``asset`` + ``metadata`` key, or ``asset`` + ``check`` (its pass flag)."""

    asset: str                   # an asset key, slash-separated ("teacher/ple")
    metadata: str | None = None
    check: str | None = None
    scope: Literal["month", "latest"] = "month"    # the month's partition, or the latest of an unpartitioned asset

    @model_validator(mode="after")
    def _one_source(self) -> Evidence:
        if (self.metadata is None) == (self.check is None):
            raise ValueError("needs exactly one of 'metadata' or 'check'")
        return self


class Item(ConfigModel):
    id: str
    stage: Literal["ingestion", "phase0", "training", "distillation", "serving", "recommendation", "champion",
                   "audit"]
    agent: Literal["ops", "audit"]
    description: str
    evidence: Evidence
    direction: Literal["max", "min"] | None = None
    warn: Number | None = None
    fail: Number | None = None
    expect: bool | str | Number | None = None
    blocking: bool = False

    @model_validator(mode="after")
    def _one_rule(self) -> Item:
        thresholds = self.warn is not None or self.fail is not None
        if thresholds == (self.expect is not None):
            raise ValueError(f"item {self.id}: needs thresholds (direction, fail, warn) or 'expect', not both")
        if thresholds and (self.direction is None or self.fail is None):
            raise ValueError(f"item {self.id}: thresholds need 'direction' and 'fail'")
        if thresholds and self.warn is not None:
            ordered = self.warn <= self.fail if self.direction == "max" else self.warn >= self.fail
            if not ordered:
                raise ValueError(f"item {self.id}: 'warn' must come before 'fail' in direction {self.direction}")
        return self


class ChecklistFile(ConfigModel):
    items: list[Item]


@dataclass(frozen=True)
class ItemResult:
    """One item's verdict and the evidence that decided it (``value`` None: no evidence found)."""

    item: Item
    verdict: Verdict
    value: Any
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"id": self.item.id, "stage": self.item.stage, "agent": self.item.agent, "verdict": str(self.verdict),
                "value": self.value, "reason": self.reason, "blocking": self.item.blocking,
                "evidence": self.item.evidence.model_dump(exclude_none=True)}


def load_checklist(config_dir: Path) -> tuple[Item, ...]:
    """Every item of ``checklist.yaml``; ids must be unique."""
    path = Path(config_dir) / "checklist.yaml"
    items = load_model(path, ChecklistFile).items
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise ConfigError(f"{path}: item id {item.id!r} appears twice")
        seen.add(item.id)
    return tuple(items)


def judge(item: Item, value: Any) -> ItemResult:
    """The verdict of ``item`` on ``value`` (None when its evidence was not found)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ItemResult(item, Verdict.UNKNOWN, None, f"no evidence: {_where(item)} was not found")
    if item.expect is not None:
        ok = value == item.expect
        return ItemResult(item, Verdict.PASS if ok else Verdict.FAIL, value,
                          f"{_where(item)} is {value!r}" + ("" if ok else f", expected {item.expect!r}"))
    if isinstance(value, bool) or not isinstance(value, int | float):
        return ItemResult(item, Verdict.UNKNOWN, value, f"{_where(item)} is {value!r}, not a number")
    beyond = (lambda limit: value > limit) if item.direction == "max" else (lambda limit: value < limit)
    word = "above" if item.direction == "max" else "below"
    if beyond(item.fail):
        return ItemResult(item, Verdict.FAIL, value, f"{_where(item)} = {value:g} is {word} the limit {item.fail:g}")
    if item.warn is not None and beyond(item.warn):
        return ItemResult(item, Verdict.WARN, value, f"{_where(item)} = {value:g} is {word} the warning {item.warn:g}")
    return ItemResult(item, Verdict.PASS, value, f"{_where(item)} = {value:g} within limits")


def _where(item: Item) -> str:
    e = item.evidence
    return f"{e.asset} {'metadata ' + e.metadata if e.metadata else 'check ' + str(e.check)}"
