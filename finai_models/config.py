"""Load and validate the 3-layer YAML configuration.

Layer 1 ``pipeline.yaml`` (common: paths, warehouse, checks), layer 2 ``datasets/{name}.yaml``
(what the data is and where it comes from), layer 3 ``feature_groups.yaml``; beside them the
task list, the product catalogue and the MCC hierarchy. Every file is a typed model
(``finai_models.config_models``, read through ``finai_models.config_base``), so a wrong key fails in
one line naming the key and the file, before any work starts; the checks across keys and files are
here. ``load_settings`` is cached: a process parses the YAML once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from finai_models.config_base import load_model
from finai_models.config_models import (
    DatasetFile,
    FeaturesFile,
    Generator,
    MccFile,
    PipelineFile,
    ProductsFile,
    TasksFile,
)
from finai_models.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[1]
# A checkout runs on its own configs/ and keeps its work in .finai/; an installed wheel carries the
# default configs as package data (pyproject.toml: force-include) and works in the current directory.
IN_CHECKOUT = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "configs").is_dir()
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs" if IN_CHECKOUT else Path(__file__).with_name("packaged_configs")
TASK_TYPES = ("binary", "multiclass", "regression")


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
    pipeline: PipelineFile
    dataset: DatasetFile
    tasks: tuple[Task, ...]
    feature_groups: tuple[FeatureGroup, ...]
    products: tuple[str, ...]
    product_columns: tuple[str, ...]
    nba_groups: dict[str, tuple[str, ...]]
    acquire_groups: dict[str, tuple[str, ...]]
    mcc: MccHierarchy
    phase0: FeaturesFile
    split: dict[str, tuple[str, str]]

    @property
    def dataset_name(self) -> str:
        return self.dataset.name

    def path(self, key: str) -> Path:
        """A path from pipeline.yaml ``paths``, resolved against the work directory."""
        return self.workdir / getattr(self.pipeline.paths, key)

    @cached_property
    def raw_dir(self) -> Path:
        return self.path("raw") / self.dataset_name

    @property
    def months(self) -> tuple[str, str]:
        return self.dataset.months.start, self.dataset.months.end


def _check(cond: bool, file: Path, message: str) -> None:
    if not cond:
        raise ConfigError(f"{file}: {message}")


def _parse_month(value: str, file: Path, key: str) -> None:
    parts = value.split("-")
    ok = len(parts) == 2 and all(p.isdigit() for p in parts) and 1 <= int(parts[1]) <= 12
    _check(ok, file, f"'{key}' must be a month YYYY-MM, got {value!r}")


def _mcc(data: MccFile, file: Path) -> MccHierarchy:
    l1_names, l2_names, l2_to_l1, codes, code_l2 = [], [], [], [], []
    for i, (l1, l2s) in enumerate(data.l1.items()):
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


def _validate_generator(gen: Generator, file: Path, products: tuple[str, ...], mcc: MccHierarchy,
                        acquire_groups: dict[str, list[str]]) -> None:
    n_latent = len(gen.latent_names)
    for name, p in gen.personas.items():
        _check(len(p.latent_mean) == n_latent, file,
               f"'generator.personas.{name}.latent_mean' needs {n_latent} values")
        _check(len(p.segment) == 4, file, f"'generator.personas.{name}.segment' needs 4 probabilities")
        _check(len(p.hours) == 5, file, f"'generator.personas.{name}.hours' needs 5 weights")
        for l2 in p.mcc_boost:
            _check(l2 in mcc.l2_names, file, f"'generator.personas.{name}.mcc_boost.{l2}' is not an L2 category")
    prods = gen.products
    _check(len(prods.base_rates) == len(products), file,
           f"'generator.products.base_rates' needs {len(products)} values, one per product")
    for name, mult in prods.persona_multipliers.items():
        _check(name in gen.personas, file, f"'generator.products.persona_multipliers.{name}' is no persona")
        _check(len(mult) == len(products), file,
               f"'generator.products.persona_multipliers.{name}' needs {len(products)} values")
    for name in gen.personas:
        _check(name in prods.persona_multipliers, file,
               f"missing key 'generator.products.persona_multipliers.{name}'")
    for group, latent in prods.group_latent.items():
        _check(group in acquire_groups, file, f"'generator.products.group_latent.{group}' is no acquire group")
        _check(latent in gen.latent_names, file, f"'generator.products.group_latent.{group}' names "
               f"unknown latent {latent!r}")
    for group in prods.intent_group_weight:
        _check(group in acquire_groups, file, f"'generator.products.intent_group_weight.{group}' is no acquire group")
    for prod in prods.new_customer_products:
        _check(prod in products, file, f"'generator.products.new_customer_products.{prod}' is no product")
    for group, sig in gen.intent_signals.items():
        _check(group in acquire_groups, file, f"'generator.intent_signals.{group}' is no acquire group")
        for l2 in sig.mcc_boost:
            _check(l2 in mcc.l2_names, file, f"'generator.intent_signals.{group}.mcc_boost.{l2}' is no L2")
    txn = gen.transactions
    for l2 in list(txn.l2_amount_shift) + list(txn.l2_popularity) + txn.online_l2:
        _check(l2 in mcc.l2_names, file, f"'generator.transactions': {l2!r} is not an L2 category")
    for axis, sit in gen.situations.items():
        _check(len(sit.values) == len(sit.probs) == 4, file,
               f"'generator.situations.{axis}' needs 4 values and 4 probs")
    lifecycle = gen.situations.get("lifecycle")
    _check(lifecycle is not None, file, "missing key 'generator.situations.lifecycle'")
    for key in ("lifecycle_intent", "lifecycle_closure"):
        for value in lifecycle.values:
            _check(value in getattr(prods, key), file, f"missing key 'generator.products.{key}.{value}'")


def _validate_dataset(data: DatasetFile, file: Path, name: str) -> dict[str, tuple[str, str]]:
    """The dataset file's cross-key checks; returns the split as (first, last) month per part."""
    _check(data.name == name, file, f"'name' is {data.name!r} but the file is for {name!r}")
    _check(data.source in ("synthetic", "santander_csv"), file,
           f"'source' must be synthetic or santander_csv, got {data.source!r}")
    _check(data.source != "synthetic" or data.generator is not None, file, "missing key 'generator'")
    _check(data.source != "santander_csv" or data.santander is not None, file, "missing key 'santander'")
    start, end = data.months.start, data.months.end
    _parse_month(start, file, "months.start")
    _parse_month(end, file, "months.end")
    _check(start <= end, file, "'months.start' is after 'months.end'")
    split = {}
    for part in ("train", "validation", "test"):
        bounds = getattr(data.split, part)
        _check(len(bounds) == 2, file, f"'split.{part}' must be [first, last] months")
        for b in bounds:
            _parse_month(b, file, f"split.{part}")
        _check(start <= bounds[0] <= bounds[1] <= end, file,
               f"'split.{part}' must lie within months.start .. months.end, first <= last")
        split[part] = (bounds[0], bounds[1])
    _check(split["train"][1] < split["validation"][0] and split["validation"][1] < split["test"][0], file,
           "'split' must order train < validation < test")
    return split


def _tasks(file: Path, acquire_groups: dict[str, list[str]]) -> tuple[Task, ...]:
    tasks = []
    for i, t in enumerate(load_model(file, TasksFile).tasks):
        _check(t.type in TASK_TYPES, file, f"'tasks[{i}].type' must be one of {TASK_TYPES}")
        _check(t.type != "multiclass" or t.classes is not None, file, f"missing key 'tasks[{i}].classes'")
        _check(len(t.window) == 2 and 1 <= t.window[0] <= t.window[1], file,
               f"'tasks[{i}].window' must be [first, last] with 1 <= first <= last (labels start after t)")
        _check(t.group is None or t.group in acquire_groups, file,
               f"'tasks[{i}].group' is not an acquire group of products.yaml")
        tasks.append(Task(t.name, t.type, t.loss, t.metric, (t.window[0], t.window[1]),
                          t.classes, t.group, t.focal_alpha, tuple(t.top_k or ())))
    return tuple(tasks)


def _products(file: Path) -> ProductsFile:
    prod = load_model(file, ProductsFile)
    names = [p.name for p in prod.products]
    _check(len(set(names)) == len(names), file, "product names must be unique")
    for key in ("nba_groups", "acquire_groups"):
        for group, members in getattr(prod, key).items():
            for m in members:
                _check(m in names, file, f"'{key}.{group}' lists unknown product {m!r}")
    return prod


def load_settings(config_dir: Path | str | None = None, dataset: str | None = None,
                  workdir: Path | str | None = None) -> Settings:
    """Read and validate every config file, once per process for the same arguments and files.

    ``config_dir`` defaults to ``$FINAI_CONFIG_DIR`` or the repository's ``configs/`` (an installed
    wheel's packaged copy); ``dataset`` to ``$FINAI_DATASET`` or ``pipeline.yaml: dataset``; ``workdir``
    to ``$FINAI_WORKDIR`` or ``<repo>/.finai`` (``./.finai`` outside a checkout). The result is cached:
    Dagster resources call this on every asset, and a second call with the same arguments returns the
    same object without reading a file, unless a config file's size or modification time changed since.
    """
    cdir = Path(config_dir or os.environ.get("FINAI_CONFIG_DIR") or DEFAULT_CONFIG_DIR)
    name = dataset or os.environ.get("FINAI_DATASET") or None
    home = REPO_ROOT if IN_CHECKOUT else Path.cwd()
    root = Path(workdir or os.environ.get("FINAI_WORKDIR") or home / ".finai").resolve()
    return _load_settings(cdir, name, root, _stamp(cdir))


def _stamp(cdir: Path) -> tuple[tuple[str, int, int], ...]:
    """Name, modification time and size of every config file: the cache key's part that sees edits."""
    files = sorted(cdir.glob("*.yaml")) + sorted(cdir.glob("datasets/*.yaml"))
    return tuple((str(p), st.st_mtime_ns, st.st_size) for p in files for st in [p.stat()])


@lru_cache(maxsize=16)
def _load_settings(cdir: Path, dataset: str | None, root: Path, stamp: tuple) -> Settings:
    pipeline_file = cdir / "pipeline.yaml"
    pipeline = load_model(pipeline_file, PipelineFile)
    name = dataset or pipeline.dataset
    dataset_file = cdir / "datasets" / f"{name}.yaml"
    if not dataset_file.is_file():
        known = sorted(p.stem for p in (cdir / "datasets").glob("*.yaml"))
        raise ConfigError(f"{pipeline_file}: dataset {name!r} has no {dataset_file} (known: {', '.join(known)})")
    data = load_model(dataset_file, DatasetFile)
    split = _validate_dataset(data, dataset_file, name)
    prod = _products(cdir / "products.yaml")
    names = tuple(p.name for p in prod.products)
    mcc_file = cdir / "mcc_hierarchy.yaml"
    mcc = _mcc(load_model(mcc_file, MccFile), mcc_file)
    tasks = _tasks(cdir / "tasks.yaml", prod.acquire_groups)
    features = load_model(cdir / "feature_groups.yaml", FeaturesFile)
    groups = tuple(FeatureGroup(g.name, g.dim, g.needs_transactions, tuple(g.experts)) for g in features.groups)
    if data.generator is not None and data.source == "synthetic":
        _validate_generator(data.generator, dataset_file, names, mcc, prod.acquire_groups)
    return Settings(
        config_dir=cdir, workdir=root, pipeline=pipeline, dataset=data, tasks=tasks,
        feature_groups=groups, products=names, product_columns=tuple(p.column for p in prod.products),
        nba_groups={k: tuple(v) for k, v in prod.nba_groups.items()},
        acquire_groups={k: tuple(v) for k, v in prod.acquire_groups.items()}, mcc=mcc,
        phase0=features, split=split,
    )
