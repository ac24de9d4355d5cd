"""The settings the code location is built from: partitions (months, tasks), one asset per feature
group, fairness checks per attribute and the sensors' timing come from ``configs/`` when the
definitions load. ``load_settings`` caches per process and re-reads a config file only when it
changes, so this is cheap to call from every module that shapes the graph."""

from __future__ import annotations

from finai_models.config import Settings, load_settings


def settings() -> Settings:
    return load_settings()
