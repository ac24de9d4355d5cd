"""The blocking fidelity gate of every student, on the test months no student saw."""

import dagster as dg

from finai_assets.defs.distill.assets import _keys, student
from finai_assets.defs.partitions import student_months_tasks
from finai_assets.defs.resources import FinAIConfig
from finai_models.artifacts import ArtifactPaths
from finai_models.distill.config import distill_config


@dg.asset_check(asset=student, blocking=True, partitions_def=student_months_tasks,
                description="Tier 1 blocks (binary AUC gap and ECE, multiclass macro-F1 gap, regression MAE/RMSE "
                            "gaps); tier 2 (agreement, JSD, rank correlation, quartile agreement) is recorded.")
def student_fidelity(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
    from finai_models.distill.students import evaluate_student

    s = finai.load()
    paths = ArtifactPaths.of(s)
    month, task = _keys(context)
    result = evaluate_student(distill_config(s), task, paths.students(month) / task, paths.student_inputs(month))
    return dg.AssetCheckResult(passed=result.passed, metadata={
        "route": result.route.upper(), **{k: float(v) for k, v in result.metrics.items()},
        "tier1_failures": dg.MetadataValue.json(result.failures),
        "tier2_recorded": dg.MetadataValue.json(result.informational),
    })
