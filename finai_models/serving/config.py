"""configs/serving.yaml and configs/reasons.yaml, checked against tasks.yaml and products.yaml.

The handler never reads YAML: the bundle carries the result of ``serving_config`` as JSON, so a
typo in a product's signal (an unknown task, a class a task does not have, a product Santander
does not list) or in a reason template fails here, when the bundle is built, and not in front of
a customer.
"""

from __future__ import annotations

from typing import Any

import yaml

from finai_models.config import Settings
from finai_models.errors import ConfigError
from finai_serving.reasons import ReasonEngine

OPS = (">=", "<=", ">", "<", "==")


def _read(settings: Settings, name: str) -> dict[str, Any]:
    path = settings.config_dir / name
    if not path.is_file():
        raise ConfigError(f"{path} is missing")
    return yaml.safe_load(path.read_text()) or {}


def serving_config(settings: Settings) -> dict[str, Any]:
    """The merged serving config: catalogue, constraints, fallback, batch, reasons, tasks and the MCC tree."""
    doc = _read(settings, "serving.yaml")
    where = settings.config_dir / "serving.yaml"
    tasks = {t.name: t for t in settings.tasks}
    ids = [p["id"] for p in doc.get("catalogue", [])]
    if not ids or len(ids) != len(set(ids)):
        raise ConfigError(f"{where}: 'catalogue' must list products with distinct ids")
    for product in doc["catalogue"]:
        pid = product["id"]
        for key in ("ko", "en"):
            if not product.get("name", {}).get(key):
                raise ConfigError(f"{where}: product {pid!r} has no {key} name")
        unknown = [p for p in product.get("owned_if", []) if p not in settings.products]
        if unknown:
            raise ConfigError(f"{where}: product {pid!r} owned_if names {unknown}, not in products.yaml")
        if not 1 <= int(product.get("risk", 0)) <= 5:
            raise ConfigError(f"{where}: product {pid!r} needs a risk level 1..5")
        if not product.get("signals"):
            raise ConfigError(f"{where}: product {pid!r} has no signals")
        for signal in product["signals"]:
            task = tasks.get(signal.get("task"))
            if task is None:
                raise ConfigError(f"{where}: product {pid!r} reads task {signal.get('task')!r}, not in tasks.yaml")
            if (task.type == "multiclass") != ("class" in signal):
                raise ConfigError(f"{where}: product {pid!r}: a 'class' is needed exactly for multiclass tasks "
                                  f"({task.name} is {task.type})")
            if "class" in signal and not 0 <= int(signal["class"]) < int(task.classes):
                raise ConfigError(f"{where}: product {pid!r}: {task.name} has classes 0..{task.classes - 1}")
            if float(signal.get("weight", 0)) <= 0 or int(signal.get("direction", 1)) not in (1, -1):
                raise ConfigError(f"{where}: product {pid!r}: signal weights must be > 0 and direction 1 or -1")
    for boost in doc.get("rule_fallback", {}).get("boosts", []):
        if boost.get("op") not in OPS or boost.get("product") not in ids:
            raise ConfigError(f"{where}: rule_fallback boost {boost} needs op in {OPS} and a catalogue product")
    if doc.get("scorer") not in ("compiled", "trees", "booster"):
        raise ConfigError(f"{where}: scorer must be 'compiled', 'trees' or 'booster'")
    reasons = _read(settings, "reasons.yaml")
    try:
        ReasonEngine(reasons)                    # the handler builds the same engine at its cold start
    except ValueError as exc:
        raise ConfigError(f"{settings.config_dir / 'reasons.yaml'}: {exc}") from None
    mcc = settings.mcc
    return {
        **doc,
        "reasons": reasons,
        "tasks": [{"name": t.name, "type": t.type, "classes": t.classes} for t in settings.tasks],
        "products": list(settings.products),
        "mcc_category": {str(code): mcc.l2_names[l2] for code, l2 in zip(mcc.codes, mcc.code_l2, strict=True)},
    }
