"""Blocking checks on the training set: split gap, label leakage on training rows, no dead group."""

import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.training.assets import training_set
from finai_models.artifacts import ArtifactPaths
from finai_models.phase0.group_power import single_group_power
from finai_models.phase0.leakage import label_correlation_findings, label_named_columns, split_gap_findings
from finai_models.teacher.data import read_schema
from finai_serving.schema import FeatureSchema


def _current(s) -> tuple:
    folder = ArtifactPaths.of(s).current_training_set()
    return folder, read_schema(folder)


def _sample(folder, part: str, schema: FeatureSchema, rows: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    table = pq.read_table(folder / f"{part}.parquet")
    pick = np.sort(np.random.default_rng(seed).choice(table.num_rows, size=min(rows, table.num_rows), replace=False))
    table = table.take(pick)
    x = np.stack([table[c].to_numpy() for c in schema.columns], axis=1)
    labels = {t.name: table[t.column].to_numpy(zero_copy_only=False).astype(float) for t in schema.tasks}
    return x, labels


@dg.asset_check(asset=training_set, blocking=True,
                description="Class A: months strictly between splits cover the longest label window.")
def split_gap_covers_label_windows(finai: FinAIConfig) -> dg.AssetCheckResult:
    s = finai.load()
    findings = split_gap_findings(s.split, s.tasks)
    return dg.AssetCheckResult(passed=not findings, description="; ".join(findings) or "gaps cover every label window",
                               metadata={"split": {k: list(v) for k, v in s.split.items()},
                                         "longest_window": max(t.window[1] for t in s.tasks)})


@dg.asset_check(asset=training_set, blocking=True,
                description="Class B on training rows: no label-named column, |corr| >= threshold or single-feature "
                            "near-perfect predictor.")
def training_rows_have_no_label_leakage(finai: FinAIConfig) -> dg.AssetCheckResult:
    s = finai.load()
    folder, schema = _current(s)
    x, labels = _sample(folder, "train", schema, s.pipeline.leakage.scan_rows, 0)
    findings = label_named_columns(list(schema.columns), s.tasks)
    findings += label_correlation_findings(x, list(schema.columns), labels, list(s.tasks),
                                           s.pipeline.leakage.max_abs_corr,
                                           s.pipeline.leakage.max_single_feature_auc)
    return dg.AssetCheckResult(passed=not findings, description="; ".join(findings[:5]) or "clean",
                               metadata={"findings": findings[:50], "rows_scanned": len(x)})


@dg.asset_check(asset=training_set, blocking=True,
                description="Every feature group varies and, used alone, predicts at least one task better than "
                            "the same model on shuffled labels, on held-out months.")
def no_dead_feature_group(finai: FinAIConfig) -> dg.AssetCheckResult:
    s = finai.load()
    folder, schema = _current(s)
    rows, min_lift = s.pipeline.dead_group.rows, s.pipeline.dead_group.min_lift
    x_tr, y_tr = _sample(folder, "train", schema, rows, 1)
    x_va, y_va = _sample(folder, "validation", schema, rows, 2)
    table = single_group_power(x_tr, y_tr, x_va, y_va, schema.groups, list(s.tasks), int(s.phase0.seed))
    dead = [r["group"] for r in table if r["varying_columns"] == 0 or not r["best_lift"] >= min_lift]
    lines = ["| group | cols | varying | best task | score | lift over shuffled |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['group']} | {r['columns']} | {r['varying_columns']} | {r['best_task']} | "
              f"{r['best_score']:.3f} | {r['best_lift']:+.3f} |" for r in table]
    return dg.AssetCheckResult(
        passed=not dead,
        description=f"dead groups: {', '.join(dead)}" if dead else f"all {len(table)} groups carry signal",
        metadata={"single_group_power": dg.MetadataValue.md("\n".join(lines)), "dead": dead,
                  "lifts": {r["group"]: r["lifts"] for r in table}})
