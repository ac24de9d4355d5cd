"""Blocking checks on Phase-0 features: Class-A time leakage, fitted state, constant groups."""


import dagster as dg
import numpy as np
import pyarrow.parquet as pq

from finai_assets.defs.features.assets import feature_group_assets, fitted_state, month_inputs
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_models.phase0.features import feature_path, load_inputs
from finai_models.phase0.leakage import fit_month_findings, future_sources
from finai_models.phase0.state import current_manifest


@dg.asset_check(asset=month_inputs, blocking=True, partitions_def=snapshot_months,
                description="Class A: every source row read for month t is dated before the end of t.")
def feature_sources_precede_snapshot(
    context: dg.AssetCheckExecutionContext, finai: FinAIConfig
) -> dg.AssetCheckResult:
    s = finai.load()
    x = load_inputs(s, context.partition_key)
    findings = future_sources(x.lineage, x.month)
    return dg.AssetCheckResult(passed=not findings, description="; ".join(findings) or "all sources precede t",
                               metadata={"lineage": x.lineage, "findings": findings})


@dg.asset_check(asset=fitted_state, blocking=True,
                description="Class A: scalers, vocabularies and fitted generators saw training months only.")
def fitted_state_saw_only_training_months(finai: FinAIConfig) -> dg.AssetCheckResult:
    manifest = current_manifest(finai.load())
    train = tuple(manifest["train_months"])
    findings = fit_month_findings(manifest["fit_months"] + manifest["vocab_months"], train)
    return dg.AssetCheckResult(passed=not findings,
                               description="; ".join(findings) or f"fitted on {train[0]}..{train[1]}",
                               metadata={"fit_months": manifest["fit_months"], "train_months": list(train)})


def _not_constant_check(asset: dg.AssetsDefinition) -> dg.AssetChecksDefinition:
    name = asset.key.path[-1]

    @dg.asset_check(asset=asset, name=f"{name}_is_informative", partitions_def=snapshot_months,
                    description="Warns when the group is constant or all zero for the month (expected only in the "
                                "first months, before any history exists); the blocking dead-group check runs on "
                                "the training set.")
    def _check(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
        s = finai.load()
        table = pq.read_table(feature_path(s, name, context.partition_key)).drop_columns(["customer_id", "month"])
        values = np.stack([c.to_numpy() for c in table.columns], axis=1) if table.num_columns else np.zeros((0, 0))
        varying = int((values.std(axis=0) > 0).sum()) if len(values) else 0
        nonzero = bool(np.any(values != 0))
        passed = varying > 0 and nonzero
        return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN,
                                   description=f"{varying}/{values.shape[1]} columns vary",
                                   metadata={"varying_columns": varying, "all_zero": not nonzero})

    return _check


group_checks = [_not_constant_check(a) for a in feature_group_assets]
