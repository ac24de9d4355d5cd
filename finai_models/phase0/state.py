"""Fitted Phase-0 state: every group's fitted parameters, the MCC vocabulary, and what they saw.

Fitting reads training months only (by default the last ``fit_months`` of the training split,
at most ``fit_sample_customers`` customers each) and writes a versioned folder
``<artifacts>/phase0/state/<version>/`` with one ``.npz`` per group and ``manifest.json``. The
version hashes the dataset, the months used and the configuration, so a refit on other months
never overwrites the state that earlier features were computed with.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from finai_models import months as M
from finai_models.artifacts import ArtifactPaths, current, set_current, write_text_atomic
from finai_models.config import Settings
from finai_models.data.store import fingerprint, require_manifest
from finai_models.errors import FinAIError
from finai_models.phase0.groups import build_groups
from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import build_month_inputs, month_customers
from finai_models.phase0.vocab import fit_mcc_vocab


@dataclass
class FittedState:
    folder: Path
    manifest: dict[str, Any]
    groups: list[FeatureGroupModel]

    @property
    def version(self) -> str:
        return self.manifest["version"]

    @property
    def mcc_vocab(self) -> list[int]:
        return self.manifest["mcc_vocab"]

    def group(self, name: str) -> FeatureGroupModel:
        return next(g for g in self.groups if g.name == name)


def state_root(settings: Settings) -> Path:
    return ArtifactPaths.of(settings).phase0_state()


def default_fit_months(settings: Settings) -> list[str]:
    first, last = settings.split["train"]
    months = M.month_range(first, last)
    return months[-int(settings.phase0.fit_months):]


def fit_state(con: duckdb.DuckDBPyConnection, settings: Settings, months: list[str] | None = None,
              log=print) -> FittedState:
    """Fit every group on ``months`` (default: the last training months) and save the state."""
    months = sorted(months or default_fit_months(settings))
    raw = require_manifest(settings.raw_dir)
    missing = [m for m in months if m not in raw["months"]]
    if missing:
        raise FinAIError(f"cannot fit Phase 0 on months missing from the raw dataset: {', '.join(missing)}")
    rng = np.random.default_rng(int(settings.phase0.seed))
    limit = int(settings.phase0.fit_sample_customers)
    train = []
    for month in months:  # sample in SQL: fitting cost does not grow with the number of customers
        ids = month_customers(con, settings, month)
        sample = np.sort(rng.choice(ids, size=min(limit, len(ids)), replace=False))
        train.append(build_month_inputs(con, settings, month, customers=sample))
    vocab = fit_mcc_vocab(con, settings, int(settings.phase0.mcc_vocab_size))
    groups = build_groups(settings)
    timings = {}
    for group in groups:
        started = time.perf_counter()
        group.fit(train, con)
        timings[group.name] = round(time.perf_counter() - started, 3)
        log(f"fitted {group.name} in {timings[group.name]:.1f}s")
    identity = {"dataset": raw["fingerprint"], "months": months, "split": settings.split,
                "phase0": settings.phase0, "groups": [(g.name, g.dim) for g in settings.feature_groups]}
    version = fingerprint(identity)
    folder = state_root(settings) / version
    folder.mkdir(parents=True, exist_ok=True)
    for group in groups:
        group.save(folder)
    manifest = {
        "version": version, "fit_months": months, "train_months": list(settings.split["train"]),
        "customers_per_month": [x.n for x in train], "mcc_vocab": vocab, "fit_seconds": timings,
        "vocab_months": list(settings.split["train"]),
        "lineage": {m: x.lineage for m, x in zip(months, train, strict=True)},
    }
    _write_json(folder / "manifest.json", manifest)
    set_current(state_root(settings), version)
    return FittedState(folder, manifest, groups)


def load_group(settings: Settings, name: str) -> tuple[FeatureGroupModel, str]:
    """One group with its fitted parameters from the current state, and the state version."""
    from finai_models.phase0.groups import group_class

    state = current_version(settings)
    spec = next(g for g in settings.feature_groups if g.name == name)
    group = group_class(name)(settings, spec.dim)
    group.load(state_root(settings) / state)
    return group, state


def current_version(settings: Settings) -> str:
    return current(state_root(settings), "Phase-0 state", "materialize phase0/fitted_state first").name


def current_manifest(settings: Settings) -> dict[str, Any]:
    """What the current state was fitted on: its months, customers and MCC vocabulary."""
    return json.loads((current(state_root(settings), "Phase-0 state", "materialize phase0/fitted_state first")
                       / "manifest.json").read_text())


def _write_json(path: Path, data: dict[str, Any]) -> None:
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str))
