"""The month's Lambda bundle, built only from students that pass the fidelity gate."""

import dagster as dg

from finai_assets.defs.distill.assets import BY_MONTH, current_inputs, student, students_dir
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_models.distill.config import distill_config


@dg.asset(key=["serving", "bundle"], group_name="serving", partitions_def=snapshot_months,
          ins={"student": dg.AssetIn(key=student.key, partition_mapping=BY_MONTH, dagster_type=dg.Nothing)},
          kinds={"zip"}, code_version="bundle-v1")
def bundle(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """One zip per month: every task's student and a SHA-256 manifest; refuses a month with a failing student."""
    from finai_models.distill.students import evaluate_student
    from finai_serving.bundle import build_bundle

    s = finai.load()
    month = context.partition_key
    cfg = distill_config(s)
    inputs, folder = current_inputs(s, month), students_dir(s, month)
    results = {t.name: evaluate_student(cfg, t.name, folder / t.name, inputs) for t in cfg.tasks}
    for name, r in results.items():
        if not r.passed:
            context.log.error(f"{name}: fidelity failed: {'; '.join(r.failures)}")
    out = s.path("artifacts") / "bundles" / f"finai-{month}.zip"
    manifest = build_bundle(folder, {t: r.passed for t, r in results.items()}, out,
                            {"month": month, "routes": {t: r.route for t, r in results.items()}})
    return dg.MaterializeResult(metadata={"files": len(manifest["files"]), "bytes": out.stat().st_size,
                                          "path": dg.MetadataValue.path(str(out))})
