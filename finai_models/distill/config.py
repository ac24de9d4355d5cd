"""``configs/distill.yaml``, validated once: temperature, alpha, routing, LightGBM, fidelity, promotion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from finai_models.config import Settings
from finai_models.errors import ConfigError
from finai_models.schema import MapOf, Optional, validate
from finai_models.teacher.tasks import TaskSpec, from_config

SPEC = {
    "temperature": float, "alpha": float, "max_train_rows": int, "max_validation_rows": int, "max_features": int,
    "seed": int,
    "routing": {"binary": {"distill_auc": float, "rule_auc": float, "rule_margin_se": float},
                "multiclass": {"distill_f1_per_chance": float, "rule_f1_per_chance": float},
                "regression": {"distill_r2": float, "rule_r2": float}},
    "lightgbm": MapOf(object),
    "tasks": Optional(MapOf(MapOf(object))),
    "fidelity": {"tier1": {"binary": {"max_auc_gap": float, "max_ece": float},
                           "multiclass": {"max_macro_f1_gap": float},
                           "regression": {"max_mae_gap": float, "max_rmse_gap": float}},
                 "tier2": {"binary": {"min_agreement": float, "max_jsd": float, "min_rank_corr": float},
                           "multiclass": {"min_agreement": float, "max_jsd": float},
                           "regression": {"min_rank_corr": float, "min_quartile_agreement": float}},
                 "ece_bins": int},
    "promotion": {"max_auc_drop": float, "max_macro_f1_drop": float, "max_mae_increase": float},
}


SAMPLE_KEYS = ("max_train_rows", "max_features")   # per-task keys that shape a student's rows and columns


@dataclass(frozen=True)
class DistillConfig:
    temperature: float
    alpha: float
    max_train_rows: int          # the teacher scores this sample of the training months
    max_validation_rows: int     # ... and this sample of the validation months (the test months whole)
    max_features: int            # columns each student keeps (``screen_features``)
    seed: int
    routing: dict[str, dict[str, float]]
    lightgbm: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    fidelity: dict[str, Any]
    promotion: dict[str, float]
    tasks: tuple[TaskSpec, ...]

    def task(self, name: str) -> TaskSpec:
        """The task called ``name``; a clear error when tasks.yaml has no such task."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise ConfigError(f"task {name!r} is not in tasks.yaml (tasks: {', '.join(t.name for t in self.tasks)})")

    def lightgbm_for(self, task: str) -> dict[str, Any]:
        """LightGBM parameters of ``task``'s student: the common block with its overrides."""
        return {k: v for k, v in {**self.lightgbm, **self.overrides.get(task, {})}.items() if k not in SAMPLE_KEYS}

    def sample_for(self, task: str) -> tuple[int, int]:
        """(training rows, feature columns) of ``task``'s student: at most the month's shared sample."""
        own = self.overrides.get(task, {})
        return (min(int(own.get("max_train_rows", self.max_train_rows)), self.max_train_rows),
                int(own.get("max_features", self.max_features)))


def distill_config(settings: Settings) -> DistillConfig:
    path = settings.config_dir / "distill.yaml"
    if not path.is_file():
        raise ConfigError(f"{path} is missing")
    doc = yaml.safe_load(path.read_text()) or {}
    validate(doc, SPEC, str(path))
    tasks = tuple(from_config(t) for t in settings.tasks)
    names = {t.name for t in tasks}
    unknown = sorted(set(doc.get("tasks") or {}) - names)
    if unknown:
        raise ConfigError(f"{path}: 'tasks' overrides {unknown}, which tasks.yaml does not define")
    if not 0.0 <= doc["alpha"] <= 1.0 or doc["temperature"] <= 0:
        raise ConfigError(f"{path}: alpha must lie in [0, 1] and temperature be positive")
    if min(doc["max_train_rows"], doc["max_validation_rows"], doc["max_features"]) < 1:
        raise ConfigError(f"{path}: max_train_rows, max_validation_rows and max_features must be positive")
    return DistillConfig(doc["temperature"], doc["alpha"], doc["max_train_rows"], doc["max_validation_rows"],
                         doc["max_features"], doc["seed"], doc["routing"],
                         dict(doc["lightgbm"]), dict(doc.get("tasks") or {}), doc["fidelity"], doc["promotion"],
                         tasks)
