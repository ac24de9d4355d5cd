"""Teacher checks: every expert got real input, the gates are task-specific, the teacher beats chance."""

import json

import dagster as dg

from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.teacher.assets import ple


def _metrics(finai: FinAIConfig, month: str) -> dict:
    return json.loads((finai.paths().teacher_run(month, "ple") / "metrics.json").read_text())


@dg.asset_check(asset=ple, blocking=True, partitions_def=snapshot_months,
                description="No expert's routed input (or side tensor) is all zero.")
def experts_receive_input(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
    coverage = _metrics(finai, context.partition_key)["expert_input_nonzero"]
    dead = {k: v for k, v in coverage.items() if v <= 0.0}
    return dg.AssetCheckResult(passed=not dead, metadata={"nonzero_share": coverage, "all_zero": list(dead)})


@dg.asset_check(asset=ple, partitions_def=snapshot_months,
                description="Layer-0 gates differ between tasks (a gate that ignores the task explains nothing).")
def gates_differ_between_tasks(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
    from finai_models.teacher.checks import gate_spread

    gates = _metrics(finai, context.partition_key)["gates"]
    spread = gate_spread(gates)
    return dg.AssetCheckResult(passed=spread >= 0.02, severity=dg.AssetCheckSeverity.WARN, metadata={
        "max_pairwise_l1": spread, "entropy": gates["entropy"], "top_expert": gates["top_expert"]})


@dg.asset_check(asset=ple, blocking=True, partitions_def=snapshot_months,
                description="Mean binary AUC on the test months is above 0.55.")
def teacher_beats_chance(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
    auc = _metrics(finai, context.partition_key)["test"]["mean_binary_auc"]
    return dg.AssetCheckResult(passed=auc > 0.55, metadata={"test_mean_binary_auc": auc})
