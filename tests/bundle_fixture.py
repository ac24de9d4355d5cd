"""A real Lambda bundle from a tiny training set whose columns carry Phase 0's real names.

The serving tests need what production has - a trained teacher, 13 distilled students, the
monthly batch, the zip - without Phase 0's cost. The tiny training set of ``conftest`` gets the
names the handler reads facts from (age, holds_<product>, roll_90d_sum, lag_001_amount, ...) and a
normalizer, so the bundle's "raw" features are ``x * std + mean`` and the handler's normalization
gives the students back exactly the rows they were trained on.
"""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from finai_models.artifacts import current
from finai_models.config import REPO_ROOT, Settings, load_settings
from finai_models.distill.config import distill_config
from finai_models.distill.inputs import prepare_inputs
from finai_models.distill.students import evaluate_student, train_student
from finai_models.serving.batch import BatchRows, build_batch
from finai_models.serving.config import serving_config
from finai_models.teacher.data import load_split, read_schema
from finai_models.teacher.experts.base import DIAGRAM_MASK, DIAGRAMS, SEQUENCE, SEQUENCE_MASK
from finai_models.teacher.run import train_teacher
from finai_serving.bundle import build_bundle

MONTH = "2025-12"
NAMED = {
    "demographics": ["age", "log_income", "tenure_months", "is_active", "num_products", "gender_code",
                     "segment_code", "region_code", "channel_code", "age_group_code", "income_group_code"],
    "txn_behavior": ["recency_days", "frequency_12m", "log_monetary_12m", "avg_amount_12m", "median_amount_180d",
                     "monthly_txns", "morning_ratio", "afternoon_ratio", "evening_ratio", "night_ratio",
                     "count_stability", "distinct_mcc_180d", "distinct_merchants_180d", "online_ratio_180d"],
    "derived_temporal": ["acquisitions_12m", "closures_12m", "months_observed", "product_diversity_12m"],
    "txn_rolling_stats": [f"roll_{w}d_{s}" for w in (7, 30, 90, 180)
                          for s in ("sum", "mean", "std", "count", "active_days")],
    "txn_lag_tensor": [f"lag_{k:03d}_{f}" for k in range(1, 201) for f in ("amount", "mcc", "days", "hour")],
}
# (mean, std) of the raw values: x ~ N(0, 1) becomes a plausible raw feature.
SCALE = {"age": (45, 12), "log_income": (10.4, 0.5), "tenure_months": (60, 30), "num_products": (3, 1.5),
         "age_group_code": (2, 0.8), "income_group_code": (2, 0.6), "recency_days": (20, 15),
         "frequency_12m": (100, 40), "online_ratio_180d": (0.4, 0.2), "distinct_mcc_180d": (12, 4),
         "roll_90d_sum": (1500, 500), "roll_180d_sum": (3000, 700), "roll_90d_count": (30, 10)}
PATTERN = {"holds_": (0.3, 0.5), "lag_": (0, 1)}
LAG = {"amount": (40, 20), "mcc": (25, 14), "days": (80, 50), "hour": (12, 5)}


def column_name(settings: Settings, group: str, i: int) -> str:
    if group == "product_holdings":
        return f"holds_{settings.products[i]}"
    names = NAMED.get(group)
    return names[i] if names else f"{group}__{i:03d}"


def normalizer(columns: list[str]) -> dict[str, Any]:
    def scale(c: str) -> tuple[float, float]:
        if c.startswith("lag_"):
            return LAG[c.split("_", 2)[2]]
        return SCALE.get(c) or next((v for p, v in PATTERN.items() if c.startswith(p)), (0.0, 1.0))

    mean, std = zip(*(scale(c) for c in columns), strict=True)
    return {"columns": columns, "kinds": ["continuous"] * len(columns), "mean": list(mean), "std": list(std),
            "log_columns": []}


def build(root: Path, write_training_set, edit_distill: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train and bundle everything under ``root``; returns the paths and settings a test needs.

    ``edit_distill`` may change the distill.yaml document first (the serving benchmark forces every
    task to a model of a fixed size)."""
    configs = root / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    if edit_distill is not None:
        doc = yaml.safe_load((configs / "distill.yaml").read_text())
        edit_distill(doc)
        (configs / "distill.yaml").write_text(yaml.safe_dump(doc))
    teacher = yaml.safe_load((configs / "teacher.yaml").read_text())
    teacher["train"].update(epochs=4, batch_size=128, eval_rows=600)
    (configs / "teacher.yaml").write_text(yaml.safe_dump(teacher))
    settings = load_settings(configs, None, root / "work")
    training_set = write_training_set(settings, version="serving", column_name=lambda g, i: column_name(settings, g, i),
                                      normalizer=normalizer)
    train_teacher(settings, training_set, root / "teacher", log=lambda _m: None)
    teacher_pt = current(root / "teacher") / "teacher.pt"
    cfg = distill_config(settings)
    inputs = prepare_inputs(cfg, training_set, teacher_pt, root / "inputs", log=lambda _m: None)
    students = root / "students"
    for t in cfg.tasks:
        train_student(cfg, t.name, inputs, students / t.name, log=lambda _m: None)
    passed = {t.name: evaluate_student(cfg, t.name, students / t.name, inputs).passed for t in cfg.tasks}

    schema = read_schema(training_set)
    test = load_split(training_set, "test", schema, ())
    norm = schema.normalizer
    raw = (test.x * np.asarray(norm["std"], np.float32) + np.asarray(norm["mean"], np.float32)).astype(np.float32)
    rows = BatchRows(test.customer_id, raw, {k: test.side[k] for k in (SEQUENCE, SEQUENCE_MASK, DIAGRAMS,
                                                                          DIAGRAM_MASK)},
                     list(settings.mcc.codes[:49]))
    scfg = serving_config(settings)
    build_batch(rows, schema, scfg, teacher_pt, students, inputs, root / "batch", log=lambda _m: None)
    zipped = root / f"finai-{MONTH}.zip"
    manifest = build_bundle(students, passed, root / "batch", scfg, zipped, {"month": MONTH})
    unpacked = root / "unpacked"
    with zipfile.ZipFile(zipped) as z:
        z.extractall(unpacked)
    return {"settings": settings, "zip": zipped, "root": unpacked, "manifest": manifest, "passed": passed,
            "students": students, "inputs": inputs, "customer_ids": [str(c) for c in test.customer_id],
            "raw": raw, "columns": list(schema.raw_columns), "config": scfg}
