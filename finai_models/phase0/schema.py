"""The feature schema of a training set from the configuration: the one place a schema is assembled.

``finai_serving.schema.FeatureSchema`` is the type (the Lambda reads it, so it lives there);
``schema_for`` fills it from ``Settings``: groups in ``feature_groups.yaml`` order, the tasks of
``tasks.yaml`` with their label columns, and each expert's routing. Phase 0 calls it with the
columns it found on disk, the tests and benchmarks with synthetic names, so all of them write
the same layout.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from finai_models.config import Settings
from finai_models.errors import ConfigError
from finai_serving.schema import FeatureSchema, Side, Task

SCHEMA_FILE = "feature_schema.json"     # in the training set's folder


def label_column(task: str) -> str:
    """The training set's label column of ``task``."""
    return f"label__{task}"


def schema_for(settings: Settings, group_columns: Mapping[str, Sequence[str]], version: str, *,
               normalizer: Mapping[str, Any] | None = None, log_columns: Sequence[str] = (),
               codes: Mapping[str, str] | None = None, side: Side | None = None, state_version: str | None = None,
               split: Mapping[str, Sequence[str]] | None = None, rows: Mapping[str, int] | None = None,
               ) -> FeatureSchema:
    """``group_columns`` maps feature group -> its raw column names; groups keep the config's order (a
    test may leave one out). With a ``normalizer`` its log columns are the schema's; without one the
    schema gets the identity normalizer and ``log_columns``."""
    known = [g.name for g in settings.feature_groups]
    unknown = sorted(set(group_columns) - set(known))
    if unknown:
        raise ConfigError(f"feature group(s) {unknown} are not in feature_groups.yaml")
    groups = [(name, list(group_columns[name])) for name in known if name in group_columns]
    if normalizer is not None:
        log_columns = normalizer["log_columns"]
    tasks = tuple(Task(t.name, t.type, label_column(t.name), t.classes) for t in settings.tasks)
    schema = FeatureSchema.build(
        version, groups, log_columns=log_columns, normalizer=normalizer, codes=codes, tasks=tasks,
        split={p: (m[0], m[1]) for p, m in (split or {}).items()}, rows=dict(rows or {}), side=side or Side(),
        state_version=state_version)
    return dataclasses.replace(schema, experts=expert_routing(settings, schema))


def expert_routing(settings: Settings, schema: FeatureSchema) -> dict[str, tuple[int, ...]]:
    """Column indices each expert reads at layer 0: its groups' columns and their ``_log`` copies."""
    group_of = schema.group_of()
    routing: dict[str, list[int]] = {}
    for group in settings.feature_groups:
        indices = [j for j, c in enumerate(schema.columns) if group_of[c] == group.name]
        for expert in group.experts:
            routing.setdefault(expert, []).extend(indices)
    return {e: tuple(sorted(ix)) for e, ix in routing.items()}
