"""``configs/monitoring.yaml``, validated once, so a bad threshold fails in one line naming the file and key.

The checks matter because the thresholds fail quietly otherwise: warning >= critical makes every
month critical, a reference group that is not an age label compares every band with nobody, and a
cron string with six fields never fires.
"""

from __future__ import annotations

import zoneinfo
from pathlib import Path
from typing import Any

from finai_models.config import Settings
from finai_models.config_base import ConfigModel, Number, load_model
from finai_models.errors import ConfigError

UNKNOWN = "unknown"      # the group of customers without the attribute; never a configured group


class Drift(ConfigModel):
    bins: int
    floor: Number
    sample_rows: int
    warning: Number
    critical: Number
    min_critical_features: int
    retrain_after_months: int


class AgeBand(ConfigModel):
    edges: list[Number]
    labels: list[str]
    reference: str


class Gender(ConfigModel):
    reference: str


class Attributes(ConfigModel):
    age_band: AgeBand
    gender: Gender


class Fairness(ConfigModel):
    confidence: Number
    min_group: int
    disparate_impact: list[Number]
    max_parity_difference: Number
    max_opportunity_difference: Number
    attributes: Attributes


class Automation(ConfigModel):
    schedule_cron: str
    timezone: str
    sensor_interval_seconds: int


class Alerts(ConfigModel):
    path: str


class MonitoringFile(ConfigModel):
    """``monitoring.yaml``; the drift and fairness code takes its blocks as plain dicts."""

    drift: Drift
    fairness: Fairness
    automation: Automation
    alerts: Alerts


def _check(cond: bool, path: Path, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: '{key}' {message}")


def _drift(d: dict[str, Any], path: Path) -> None:
    _check(d["bins"] >= 2, path, "drift.bins", f"must be at least 2, got {d['bins']}")
    _check(0 < d["floor"] < 1 / d["bins"], path, "drift.floor", f"must lie in (0, 1/bins), got {d['floor']}")
    _check(d["sample_rows"] >= d["bins"], path, "drift.sample_rows", "must be at least 'drift.bins'")
    _check(0 < d["warning"] < d["critical"], path, "drift.warning",
           f"must satisfy 0 < warning < critical, got {d['warning']} and {d['critical']}")
    _check(d["min_critical_features"] >= 1, path, "drift.min_critical_features", "must be at least 1")
    _check(d["retrain_after_months"] >= 1, path, "drift.retrain_after_months", "must be at least 1")


def _fairness(f: dict[str, Any], path: Path) -> None:
    _check(0 < f["confidence"] < 1, path, "fairness.confidence", f"must lie in (0, 1), got {f['confidence']}")
    _check(f["min_group"] >= 1, path, "fairness.min_group", "must be at least 1")
    bounds = f["disparate_impact"]
    _check(len(bounds) == 2 and bounds[0] < 1 < bounds[1], path, "fairness.disparate_impact",
           f"must be [lo, hi] with lo < 1 < hi, got {bounds}")
    for key in ("max_parity_difference", "max_opportunity_difference"):
        _check(0 < f[key] < 1, path, f"fairness.{key}", f"must lie in (0, 1), got {f[key]}")
    age = f["attributes"]["age_band"]
    edges, labels = age["edges"], age["labels"]
    _check(len(edges) >= 1 and all(a < b for a, b in zip(edges, edges[1:], strict=False)), path,
           "fairness.attributes.age_band.edges", f"must be strictly increasing, got {edges}")
    _check(len(labels) == len(edges) + 1, path, "fairness.attributes.age_band.labels",
           f"needs len(edges) + 1 = {len(edges) + 1} labels, got {len(labels)}")
    _check(len(set(labels)) == len(labels) and UNKNOWN not in labels, path, "fairness.attributes.age_band.labels",
           f"must be distinct and not {UNKNOWN!r} (reserved for a missing age)")
    _check(age["reference"] in labels, path, "fairness.attributes.age_band.reference",
           f"is {age['reference']!r}, not one of the labels {labels}")
    gender = f["attributes"]["gender"]["reference"]
    _check(bool(gender) and gender != UNKNOWN, path, "fairness.attributes.gender.reference",
           f"must name a group other than {UNKNOWN!r}")


def _automation(a: dict[str, Any], alerts: dict[str, Any], path: Path) -> None:
    _check(len(a["schedule_cron"].split()) == 5, path, "automation.schedule_cron",
           f"must have 5 fields (minute hour day month weekday), got {a['schedule_cron']!r}")
    try:
        zoneinfo.ZoneInfo(a["timezone"])
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{path}: 'automation.timezone' {a['timezone']!r} is not an IANA time zone") from None
    _check(a["sensor_interval_seconds"] >= 1, path, "automation.sensor_interval_seconds", "must be at least 1")
    _check(bool(alerts["path"].strip()), path, "alerts.path", "must name a file")


def monitoring_config(settings: Settings) -> dict[str, Any]:
    """The parsed ``monitoring.yaml`` after every check; the dict's blocks are what the functions take."""
    path = settings.config_dir / "monitoring.yaml"
    doc = load_model(path, MonitoringFile).model_dump()
    _drift(doc["drift"], path)
    _fairness(doc["fairness"], path)
    _automation(doc["automation"], doc["alerts"], path)
    return doc
