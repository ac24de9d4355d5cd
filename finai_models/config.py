"""Load and validate the 3-layer YAML configuration.

Layer 1 ``pipeline.yaml`` (common: paths, warehouse, checks), layer 2 ``datasets/{name}.yaml``
(what the data is and where it comes from), layer 3 ``feature_groups.yaml``; beside them the
task list, the product catalogue and the MCC hierarchy. Everything is validated at load time so
that a wrong key fails in one line naming the key and the file, before any work starts.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from finai_models.errors import ConfigError
from finai_models.schema import MapOf, Optional, validate

REPO_ROOT = Path(__file__).resolve().parents[1]
TASK_TYPES = ("binary", "multiclass", "regression")

PIPELINE_SPEC = {
    "dataset": str,
    "paths": {"raw": str, "warehouse": str, "artifacts": str, "dagster_home": str},
    "warehouse": {"raw_schema": str, "memory_limit": str, "threads": int},
    "raw_checks": {"max_null_fraction": float, "min_rows_per_month": int},
    "leakage": {"max_abs_corr": float, "max_single_feature_auc": float, "scan_rows": int},
    "dead_group": {"min_lift": float, "rows": int},
    "training_set": {"max_rows_per_month": int},
}
PERSONA_SPEC = {
    "weight": float, "latent_mean": [float], "age": [float], "income": [float], "tenure": [float],
    "segment": [float], "active": float, "txn_rate": float, "amount": [float], "hours": [float],
    "mcc_boost": MapOf(float),
}
GENERATOR_SPEC = {
    "customers": int, "seed": int, "new_customer_fraction": float, "latent_names": [str],
    "latent_sd": float, "latent_decouple": float, "monthly_latent_noise": float,
    "personas": MapOf(PERSONA_SPEC),
    "situations": MapOf({"values": [str], "probs": [float]}),
    "situation_switch_rate": float,
    "dynamics": {
        "activity_trend": float, "volatile_swing": float, "wealth_trend": float, "wealth_shock": float,
        "active_persistence": float, "segment_review_rate": float, "segment_top_wealth": float,
        "segment_student_age": float, "segment_student_wealth": float,
        "unknown_segment_resolve_rate": float, "segment_lapse_rate": float, "income_noise": float,
    },
    "products": {
        "base_rates": [float], "persona_multipliers": MapOf([float]), "group_latent": MapOf(str),
        "intent_rate": float, "intent_group_weight": MapOf(float), "intent_months": [int],
        "momentum_months": int, "momentum_boost": float, "intent_conversion": float,
        "spontaneous_rate": float, "closure_rate": float, "lifecycle_intent": MapOf(float),
        "lifecycle_closure": MapOf(float), "new_customer_products": MapOf(float),
    },
    "intent_signals": MapOf({"spend_multiplier": float, "mcc_boost": MapOf(float)}),
    "attrition": {
        "rate": float, "loyalty_effect": float, "months": [int], "spend_decay": float,
        "closure_probability": float, "recovery": float,
    },
    "transactions": {
        "inactive_rate_multiplier": float, "activity_effect": float, "wealth_amount_effect": float,
        "l2_popularity": MapOf(float), "pref_noise": float, "pref_drift": float, "consumption_drift": float,
        "l2_amount_shift": MapOf(float), "merchants_per_mcc": int, "merchant_loyalty": float,
        "channels": [str], "online_l2": [str],
    },
    "regions": int,
    "acquisition_channels": int,
}
DATASET_SPEC = {
    "name": str,
    "source": str,
    "months": {"start": str, "end": str},
    "split": {"train": [str], "validation": [str], "test": [str]},
    "generator": Optional(GENERATOR_SPEC),
    "santander": Optional({
        "csv": str, "has_card_transactions": bool, "gender_map": MapOf(str),
        "segment_map": MapOf(str), "required_columns": [str],
    }),
}
TASKS_SPEC = {"tasks": [{
    "name": str, "type": str, "loss": str, "metric": str, "window": [int],
    "classes": Optional(int), "top_k": Optional([int]), "group": Optional(str),
    "focal_alpha": Optional(float),
}]}
FEATURES_SPEC = {
    "lookback_months": int, "txn_days": int, "fit_sample_customers": int, "fit_months": int, "seed": int,
    "mcc_vocab_size": int, "mcc_multihot_size": int,
    "groups": [{"name": str, "dim": int, "needs_transactions": bool, "experts": [str]}],
}
PRODUCTS_SPEC = {
    "products": [{"name": str, "column": str}],
    "nba_groups": MapOf([str]),
    "acquire_groups": MapOf([str]),
}
MCC_SPEC = {"l1": MapOf(MapOf([int]))}


@dataclass(frozen=True)
class Task:
    name: str
    type: str
    loss: str
    metric: str
    window: tuple[int, int]
    classes: int | None = None
    group: str | None = None
    focal_alpha: float | None = None
    top_k: tuple[int, ...] = ()


@dataclass(frozen=True)
class FeatureGroup:
    name: str
    dim: int
    needs_transactions: bool
    experts: tuple[str, ...] = ()


@dataclass(frozen=True)
class MccHierarchy:
    """Codes in config order with their L2 and L1 indices."""

    l1_names: tuple[str, ...]
    l2_names: tuple[str, ...]
    l2_to_l1: tuple[int, ...]
    codes: tuple[int, ...]
    code_l2: tuple[int, ...]


@dataclass(frozen=True)
class Settings:
    """The merged, validated configuration plus the resolved work directory."""

    config_dir: Path
    workdir: Path
    pipeline: dict[str, Any]
    dataset: dict[str, Any]
    tasks: tuple[Task, ...]
    feature_groups: tuple[FeatureGroup, ...]
    products: tuple[str, ...]
    product_columns: tuple[str, ...]
    nba_groups: dict[str, tuple[str, ...]]
    acquire_groups: dict[str, tuple[str, ...]]
    mcc: MccHierarchy
    phase0: dict[str, Any]
    split: dict[str, tuple[str, str]]

    @property
    def dataset_name(self) -> str:
        return self.dataset["name"]

    def path(self, key: str) -> Path:
        """A path from pipeline.yaml ``paths``, resolved against the work directory."""
        return self.workdir / self.pipeline["paths"][key]

    @cached_property
    def raw_dir(self) -> Path:
        return self.path("raw") / self.dataset_name

    @property
    def months(self) -> tuple[str, str]:
        return self.dataset["months"]["start"], self.dataset["months"]["end"]


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        with path.open() as f:
            return yaml.safe_load(f)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


def _load(path: Path, spec: Any) -> Any:
    data = _read_yaml(path)
    validate(data, spec, str(path))
    return data


def _check(cond: bool, file: Path, message: str) -> None:
    if not cond:
        raise ConfigError(f"{file}: {message}")


def _parse_month(value: str, file: Path, key: str) -> None:
    parts = value.split("-")
    ok = len(parts) == 2 and all(p.isdigit() for p in parts) and 1 <= int(parts[1]) <= 12
    _check(ok, file, f"'{key}' must be a month YYYY-MM, got {value!r}")


def _mcc(data: dict, file: Path) -> MccHierarchy:
    l1_names, l2_names, l2_to_l1, codes, code_l2 = [], [], [], [], []
    for i, (l1, l2s) in enumerate(data["l1"].items()):
        l1_names.append(l1)
        for l2, l2_codes in l2s.items():
            l2_to_l1.append(i)
            l2_names.append(l2)
            for code in l2_codes:
                _check(code not in codes, file, f"MCC {code} appears twice (l1.{l1}.{l2})")
                _check(0 <= code <= 9999, file, f"MCC {code} in l1.{l1}.{l2} is not a 4-digit code")
                codes.append(code)
                code_l2.append(len(l2_names) - 1)
    return MccHierarchy(tuple(l1_names), tuple(l2_names), tuple(l2_to_l1), tuple(codes), tuple(code_l2))


def _validate_generator(gen: dict, file: Path, products: tuple[str, ...], mcc: MccHierarchy,
                        acquire_groups: dict) -> None:
    n_latent = len(gen["latent_names"])
    for name, p in gen["personas"].items():
        _check(len(p["latent_mean"]) == n_latent, file,
               f"'generator.personas.{name}.latent_mean' needs {n_latent} values")
        _check(len(p["segment"]) == 4, file, f"'generator.personas.{name}.segment' needs 4 probabilities")
        _check(len(p["hours"]) == 5, file, f"'generator.personas.{name}.hours' needs 5 weights")
        for l2 in p["mcc_boost"]:
            _check(l2 in mcc.l2_names, file, f"'generator.personas.{name}.mcc_boost.{l2}' is not an L2 category")
    prods = gen["products"]
    _check(len(prods["base_rates"]) == len(products), file,
           f"'generator.products.base_rates' needs {len(products)} values, one per product")
    for name, mult in prods["persona_multipliers"].items():
        _check(name in gen["personas"], file, f"'generator.products.persona_multipliers.{name}' is no persona")
        _check(len(mult) == len(products), file,
               f"'generator.products.persona_multipliers.{name}' needs {len(products)} values")
    for name in gen["personas"]:
        _check(name in prods["persona_multipliers"], file,
               f"missing key 'generator.products.persona_multipliers.{name}'")
    for group, latent in prods["group_latent"].items():
        _check(group in acquire_groups, file, f"'generator.products.group_latent.{group}' is no acquire group")
        _check(latent in gen["latent_names"], file, f"'generator.products.group_latent.{group}' names "
               f"unknown latent {latent!r}")
    for group in prods["intent_group_weight"]:
        _check(group in acquire_groups, file, f"'generator.products.intent_group_weight.{group}' is no acquire group")
    for prod in prods["new_customer_products"]:
        _check(prod in products, file, f"'generator.products.new_customer_products.{prod}' is no product")
    for group, sig in gen["intent_signals"].items():
        _check(group in acquire_groups, file, f"'generator.intent_signals.{group}' is no acquire group")
        for l2 in sig["mcc_boost"]:
            _check(l2 in mcc.l2_names, file, f"'generator.intent_signals.{group}.mcc_boost.{l2}' is no L2")
    txn = gen["transactions"]
    for l2 in list(txn["l2_amount_shift"]) + list(txn["l2_popularity"]) + txn["online_l2"]:
        _check(l2 in mcc.l2_names, file, f"'generator.transactions': {l2!r} is not an L2 category")
    for axis, sit in gen["situations"].items():
        _check(len(sit["values"]) == len(sit["probs"]) == 4, file,
               f"'generator.situations.{axis}' needs 4 values and 4 probs")
    for key in ("lifecycle_intent", "lifecycle_closure"):
        for value in gen["situations"]["lifecycle"]["values"]:
            _check(value in prods[key], file, f"missing key 'generator.products.{key}.{value}'")


def load_settings(config_dir: Path | str | None = None, dataset: str | None = None,
                  workdir: Path | str | None = None) -> Settings:
    """Read and validate every config file.

    ``config_dir`` defaults to ``$FINAI_CONFIG_DIR`` or the repository's ``configs/``;
    ``dataset`` to ``$FINAI_DATASET`` or ``pipeline.yaml: dataset``; ``workdir`` to
    ``$FINAI_WORKDIR`` or ``<repo>/.finai``.
    """
    cdir = Path(config_dir or os.environ.get("FINAI_CONFIG_DIR") or REPO_ROOT / "configs")
    pipeline_file = cdir / "pipeline.yaml"
    pipeline = _load(pipeline_file, PIPELINE_SPEC)
    name = dataset or os.environ.get("FINAI_DATASET") or pipeline["dataset"]
    dataset_file = cdir / "datasets" / f"{name}.yaml"
    if not dataset_file.is_file():
        known = sorted(p.stem for p in (cdir / "datasets").glob("*.yaml"))
        raise ConfigError(f"{pipeline_file}: dataset {name!r} has no {dataset_file} (known: {', '.join(known)})")
    data = _load(dataset_file, DATASET_SPEC)
    _check(data["name"] == name, dataset_file, f"'name' is {data['name']!r} but the file is for {name!r}")
    _check(data["source"] in ("synthetic", "santander_csv"), dataset_file,
           f"'source' must be synthetic or santander_csv, got {data['source']!r}")
    _check(data["source"] != "synthetic" or "generator" in data, dataset_file, "missing key 'generator'")
    _check(data["source"] != "santander_csv" or "santander" in data, dataset_file, "missing key 'santander'")
    _parse_month(data["months"]["start"], dataset_file, "months.start")
    _parse_month(data["months"]["end"], dataset_file, "months.end")
    _check(data["months"]["start"] <= data["months"]["end"], dataset_file, "'months.start' is after 'months.end'")

    products_file = cdir / "products.yaml"
    prod = _load(products_file, PRODUCTS_SPEC)
    names = tuple(p["name"] for p in prod["products"])
    _check(len(set(names)) == len(names), products_file, "product names must be unique")
    for key in ("nba_groups", "acquire_groups"):
        for group, members in prod[key].items():
            for m in members:
                _check(m in names, products_file, f"'{key}.{group}' lists unknown product {m!r}")

    mcc_file = cdir / "mcc_hierarchy.yaml"
    mcc = _mcc(_load(mcc_file, MCC_SPEC), mcc_file)

    tasks_file = cdir / "tasks.yaml"
    tasks = []
    for i, t in enumerate(_load(tasks_file, TASKS_SPEC)["tasks"]):
        _check(t["type"] in TASK_TYPES, tasks_file, f"'tasks[{i}].type' must be one of {TASK_TYPES}")
        _check(t["type"] != "multiclass" or "classes" in t, tasks_file, f"missing key 'tasks[{i}].classes'")
        _check(len(t["window"]) == 2 and 1 <= t["window"][0] <= t["window"][1], tasks_file,
               f"'tasks[{i}].window' must be [first, last] with 1 <= first <= last (labels start after t)")
        _check(t.get("group") is None or t["group"] in prod["acquire_groups"], tasks_file,
               f"'tasks[{i}].group' is not an acquire group of products.yaml")
        tasks.append(Task(t["name"], t["type"], t["loss"], t["metric"], tuple(t["window"]),
                          t.get("classes"), t.get("group"), t.get("focal_alpha"), tuple(t.get("top_k") or ())))

    features_file = cdir / "feature_groups.yaml"
    features = _load(features_file, FEATURES_SPEC)
    groups = tuple(FeatureGroup(g["name"], g["dim"], g["needs_transactions"], tuple(g["experts"]))
                   for g in features["groups"])
    phase0 = {k: v for k, v in features.items() if k != "groups"}

    split = {}
    for part in ("train", "validation", "test"):
        bounds = data["split"][part]
        _check(len(bounds) == 2, dataset_file, f"'split.{part}' must be [first, last] months")
        for b in bounds:
            _parse_month(b, dataset_file, f"split.{part}")
        _check(data["months"]["start"] <= bounds[0] <= bounds[1] <= data["months"]["end"], dataset_file,
               f"'split.{part}' must lie within months.start .. months.end, first <= last")
        split[part] = (bounds[0], bounds[1])
    _check(split["train"][1] < split["validation"][0] and split["validation"][1] < split["test"][0], dataset_file,
           "'split' must order train < validation < test")

    if data["source"] == "synthetic":
        _validate_generator(data["generator"], dataset_file, names, mcc, prod["acquire_groups"])

    root = Path(workdir or os.environ.get("FINAI_WORKDIR") or REPO_ROOT / ".finai")
    return Settings(
        config_dir=cdir, workdir=root.resolve(), pipeline=pipeline, dataset=data, tasks=tuple(tasks),
        feature_groups=groups, products=names, product_columns=tuple(p["column"] for p in prod["products"]),
        nba_groups={k: tuple(v) for k, v in prod["nba_groups"].items()},
        acquire_groups={k: tuple(v) for k, v in prod["acquire_groups"].items()}, mcc=mcc,
        phase0=phase0, split=split,
    )
