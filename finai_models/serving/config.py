"""configs/serving.yaml and configs/reasons.yaml, checked against tasks.yaml and products.yaml.

The handler never reads YAML: the bundle carries the result of ``serving_config`` as JSON, so a
typo in a product's signal (an unknown task, a class a task does not have, a product Santander
does not list) or in a reason template fails here, when the bundle is built, and not in front of
a customer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from finai_models.config import Settings, Task
from finai_models.config_base import ConfigModel, Number, load_model
from finai_models.errors import ConfigError
from finai_serving.reasons import ReasonEngine

OPS = (">=", "<=", ">", "<", "==")


class Signal(ConfigModel):
    task: str
    weight: Number
    class_: int | None = Field(None, alias="class")
    direction: int = 1


class Product(ConfigModel):
    id: str
    name: dict[str, str]
    owned_if: list[str] = Field(default_factory=list)
    risk: int
    min_age: int | None = None
    min_income: Number | None = None
    signals: list[Signal] = Field(default_factory=list)


class Fatigue(ConfigModel):
    max_messages_7d: int


class Suitability(ConfigModel):
    assessment_free_max_risk: int
    senior_age: int
    senior_max_risk: int
    low_income: Number
    low_income_max_risk: int


class Constraints(ConfigModel):
    min_score: Number
    fatigue: Fatigue
    suitability: Suitability


class Boost(ConfigModel):
    fact: str
    op: str
    value: Number
    product: str
    boost: Number


class RuleFallback(ConfigModel):
    boosts: list[Boost] = Field(default_factory=list)


class GateStudent(ConfigModel):
    features: int
    ridge: Number
    holdout: Number


class Batch(ConfigModel):
    max_customers: int
    quantiles: int
    gate_student: GateStudent


class ServingFile(ConfigModel):
    """``serving.yaml``. The bundle carries it as written (``model_dump(exclude_unset=True)``)."""

    currency: str
    top_k: int
    max_top_k: int
    catalogue: list[Product]
    constraints: Constraints
    rule_fallback: RuleFallback = Field(default_factory=RuleFallback)
    batch: Batch
    scorer: str


class Theme(ConfigModel):
    groups: list[str]
    experts: list[str]


class Pattern(ConfigModel):
    name: str
    pattern: str
    case_sensitive: bool = False


class Safety(ConfigModel):
    length: dict[str, dict[str, int]]
    script: dict[str, dict[str, Number]]
    claims: list[Pattern]
    pii: list[Pattern]
    tone: list[Pattern]
    format: list[Pattern]


class ReasonsFile(ConfigModel):
    """``reasons.yaml``'s shape; templates (keyed by the configured locales) are checked by ``ReasonEngine``."""

    version: int
    locales: list[str]
    currency: dict[str, str]
    facts: dict[str, str]
    gate_weight: Number
    drivers: int
    themes: dict[str, Theme]
    templates: dict[str, list[dict[str, Any]]]
    cold_start: dict[str, list[str]]
    safe: dict[str, list[str]]
    categories: dict[str, dict[str, str]]
    safety: Safety
    l2a: dict[str, Any]


def serving_config(settings: Settings) -> dict[str, Any]:
    """The merged serving config: catalogue, constraints, fallback, batch, reasons, tasks and the MCC tree."""
    where = settings.config_dir / "serving.yaml"
    doc = load_model(where, ServingFile)
    tasks = {t.name: t for t in settings.tasks}
    ids = [p.id for p in doc.catalogue]
    if not ids or len(ids) != len(set(ids)):
        raise ConfigError(f"{where}: 'catalogue' must list products with distinct ids")
    for product in doc.catalogue:
        _check_product(product, where, tasks, settings.products)
    for boost in doc.rule_fallback.boosts:
        if boost.op not in OPS or boost.product not in ids:
            raise ConfigError(f"{where}: rule_fallback boost {boost.model_dump()} needs op in {OPS} and a "
                              "catalogue product")
    if doc.scorer not in ("compiled", "trees", "booster"):
        raise ConfigError(f"{where}: scorer must be 'compiled', 'trees' or 'booster'")
    reasons_file = settings.config_dir / "reasons.yaml"
    reasons = load_model(reasons_file, ReasonsFile).model_dump(exclude_unset=True)
    try:
        ReasonEngine(reasons)                    # the handler builds the same engine at its cold start
    except ValueError as exc:
        raise ConfigError(f"{reasons_file}: {exc}") from None
    mcc = settings.mcc
    return {
        **doc.model_dump(by_alias=True, exclude_unset=True),
        "reasons": reasons,
        "tasks": [{"name": t.name, "type": t.type, "classes": t.classes} for t in settings.tasks],
        "products": list(settings.products),
        "mcc_category": {str(code): mcc.l2_names[l2] for code, l2 in zip(mcc.codes, mcc.code_l2, strict=True)},
    }


def _check_product(product: Product, where: Path, tasks: dict[str, Task], products: tuple[str, ...]) -> None:
    pid = product.id
    for key in ("ko", "en"):
        if not product.name.get(key):
            raise ConfigError(f"{where}: product {pid!r} has no {key} name")
    unknown = [p for p in product.owned_if if p not in products]
    if unknown:
        raise ConfigError(f"{where}: product {pid!r} owned_if names {unknown}, not in products.yaml")
    if not 1 <= product.risk <= 5:
        raise ConfigError(f"{where}: product {pid!r} needs a risk level 1..5")
    if not product.signals:
        raise ConfigError(f"{where}: product {pid!r} has no signals")
    for signal in product.signals:
        task = tasks.get(signal.task)
        if task is None:
            raise ConfigError(f"{where}: product {pid!r} reads task {signal.task!r}, not in tasks.yaml")
        if (task.type == "multiclass") != (signal.class_ is not None):
            raise ConfigError(f"{where}: product {pid!r}: a 'class' is needed exactly for multiclass tasks "
                              f"({task.name} is {task.type})")
        if signal.class_ is not None and not 0 <= signal.class_ < int(task.classes or 0):
            raise ConfigError(f"{where}: product {pid!r}: {task.name} has classes 0..{(task.classes or 0) - 1}")
        if signal.weight <= 0 or signal.direction not in (1, -1):
            raise ConfigError(f"{where}: product {pid!r}: signal weights must be > 0 and direction 1 or -1")
