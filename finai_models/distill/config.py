"""``configs/distill.yaml``: temperature, alpha, routing, LightGBM, fidelity, promotion.

``DistillFile`` validates the file (``finai_models.config_base``); ``DistillConfig`` is what the
distillation code is handed: the file's blocks as plain dicts plus the tasks they apply to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import Field

from finai_models.config import Settings
from finai_models.config_base import ConfigModel, Number, load_model
from finai_models.errors import ConfigError
from finai_models.teacher.tasks import TaskSpec, from_config


class BinaryRouting(ConfigModel):
    distill_auc: Number
    rule_auc: Number
    rule_margin_se: Number


class MulticlassRouting(ConfigModel):
    distill_f1_per_chance: Number
    rule_f1_per_chance: Number


class RegressionRouting(ConfigModel):
    distill_r2: Number
    rule_r2: Number


class Routing(ConfigModel):
    binary: BinaryRouting
    multiclass: MulticlassRouting
    regression: RegressionRouting


class Tier1Binary(ConfigModel):
    max_auc_gap: Number
    max_ece: Number


class Tier1Multiclass(ConfigModel):
    max_macro_f1_gap: Number


class Tier1Regression(ConfigModel):
    max_mae_gap: Number
    max_rmse_gap: Number


class Tier1(ConfigModel):
    binary: Tier1Binary
    multiclass: Tier1Multiclass
    regression: Tier1Regression


class Tier2Binary(ConfigModel):
    min_agreement: Number
    max_jsd: Number
    min_rank_corr: Number


class Tier2Multiclass(ConfigModel):
    min_agreement: Number
    max_jsd: Number


class Tier2Regression(ConfigModel):
    min_rank_corr: Number
    min_quartile_agreement: Number


class Tier2(ConfigModel):
    binary: Tier2Binary
    multiclass: Tier2Multiclass
    regression: Tier2Regression


class Fidelity(ConfigModel):
    tier1: Tier1
    tier2: Tier2
    ece_bins: int


class Promotion(ConfigModel):
    max_auc_drop: Number
    max_macro_f1_drop: Number
    max_mae_increase: Number


class DistillFile(ConfigModel):
    """``distill.yaml``. LightGBM blocks stay free-form: they are LightGBM's own parameters."""

    temperature: Number
    alpha: Number
    max_train_rows: int
    max_validation_rows: int
    max_features: int
    seed: int
    routing: Routing
    lightgbm: dict[str, Any]
    tasks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    fidelity: Fidelity
    promotion: Promotion


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
    """``distill.yaml`` checked against tasks.yaml; the numeric code takes its blocks as plain dicts."""
    path = settings.config_dir / "distill.yaml"
    doc = load_model(path, DistillFile)
    tasks = tuple(from_config(t) for t in settings.tasks)
    names = {t.name for t in tasks}
    unknown = sorted(set(doc.tasks) - names)
    if unknown:
        raise ConfigError(f"{path}: 'tasks' overrides {unknown}, which tasks.yaml does not define")
    if not 0.0 <= doc.alpha <= 1.0 or doc.temperature <= 0:
        raise ConfigError(f"{path}: alpha must lie in [0, 1] and temperature be positive")
    if min(doc.max_train_rows, doc.max_validation_rows, doc.max_features) < 1:
        raise ConfigError(f"{path}: max_train_rows, max_validation_rows and max_features must be positive")
    raw = doc.model_dump()
    return DistillConfig(doc.temperature, doc.alpha, doc.max_train_rows, doc.max_validation_rows,
                         doc.max_features, doc.seed, raw["routing"], raw["lightgbm"], raw["tasks"],
                         raw["fidelity"], raw["promotion"], tasks)
