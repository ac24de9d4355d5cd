"""Distillation: the month's shared student inputs, one student per month x task, and promotion.

``distill/soft_labels`` runs the month's teacher once over the students' rows and decides each
task's route; ``distill/student`` trains one task's LightGBM (a month x task partition, so a
failed task re-runs alone and the UI shows a grid); its blocking fidelity check lives in
``checks.py``. ``distill/promotion`` re-applies the same fidelity function to all of the month's
students, compares them with the champion's on the same held-out rows and writes the decision to
the audit log. ``distill/champion`` is the registry's current champion, whatever month it was
trained in: every month's serving batch and bundle are built from it, so a rejected challenger
leaves the previous champion serving.
"""

import json
from typing import TYPE_CHECKING

import dagster as dg

from finai_assets.defs.automation import ON_NEW_CHAMPION, REFRESH
from finai_assets.defs.partitions import snapshot_months, student_months_tasks
from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.teacher.assets import lightgbm_baseline, ple
from finai_models.artifacts import ArtifactPaths, set_current
from finai_models.config import Settings
from finai_models.distill.config import distill_config
from finai_models.errors import FinAIError

if TYPE_CHECKING:
    from finai_models.distill.promotion import Registry

BY_MONTH = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="month")


def _keys(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> tuple[str, str]:
    key = context.partition_key
    return key.keys_by_dimension["month"], key.keys_by_dimension["task"]


@dg.asset(key=["distill", "soft_labels"], group_name="distill", partitions_def=snapshot_months, deps=[ple],
          kinds={"pytorch", "numpy"}, code_version="soft-labels-v1", automation_condition=REFRESH)
def soft_labels(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """The teacher's logits (T = 1) on the students' rows, binned training rows, and each task's route."""
    from finai_models.distill.inputs import prepare_inputs

    s = finai.load()
    paths = ArtifactPaths.of(s)
    month = context.partition_key
    cfg = distill_config(s)
    teacher = paths.teacher_run(month, "ple") / "teacher.pt"
    out = prepare_inputs(cfg, paths.current_training_set(), teacher, paths.student_inputs_root(month),
                         log=context.log.info)
    set_current(out.parent, out.name)
    meta = json.loads((out / "inputs.json").read_text())
    rows = ["| task | route | teacher (validation) |", "|---|---|---|"]
    rows += [f"| {t} | {r['route'].upper()} | {r['reason']} |" for t, r in meta["routing"].items()]
    routes = [r["route"] for r in meta["routing"].values()]
    return dg.MaterializeResult(metadata={
        "routing": dg.MetadataValue.md("\n".join(rows)), "rows": meta["rows"], "months": meta["months"],
        **{f"{r}_tasks": routes.count(r) for r in ("distill", "direct", "rule")},
        "path": dg.MetadataValue.path(str(out)),
    })


@dg.asset(key=["distill", "student"], group_name="distill", partitions_def=student_months_tasks,
          ins={"soft_labels": dg.AssetIn(key=soft_labels.key, partition_mapping=BY_MONTH, dagster_type=dg.Nothing)},
          kinds={"lightgbm"}, code_version="student-v1", automation_condition=REFRESH)
def student(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """One task's LightGBM student: α-blended on soft + hard labels (or hard only when routed DIRECT),
    early-stopped and calibrated on the validation months; compared on the test months."""
    from finai_models.distill.compare import comparison_row
    from finai_models.distill.students import evaluate_student, train_student

    s = finai.load()
    paths = ArtifactPaths.of(s)
    month, task = _keys(context)
    cfg = distill_config(s)
    inputs = paths.student_inputs(month)
    out = paths.students(month) / task
    meta = train_student(cfg, task, inputs, out, log=context.log.info)
    result = evaluate_student(cfg, task, out, inputs)
    baseline = paths.lightgbm_run(month) / "metrics.json"
    row = comparison_row(cfg.task(task), result, json.loads(baseline.read_text()) if baseline.is_file() else None)
    return dg.MaterializeResult(metadata={
        "route": meta["route"].upper(), "routing_reason": meta["routing"]["reason"],
        "iterations": meta.get("iterations", 0), "train_rows": meta.get("train_rows", 0),
        "calibrator": (meta.get("calibrator") or {}).get("kind", "none"), "seconds": meta.get("seconds", 0.0),
        "comparison": dg.MetadataValue.md(row), "fidelity_passed": result.passed,
        "path": dg.MetadataValue.path(str(out)),
    })


class PromotionConfig(dg.Config):
    force: bool = False     # promote even if worse than the champion (never past a failed fidelity gate)
    reason: str = ""        # recorded in the audit log with a forced promotion


@dg.asset(key=["distill", "promotion"], group_name="distill", partitions_def=snapshot_months,
          ins={"student": dg.AssetIn(key=student.key, partition_mapping=BY_MONTH, dagster_type=dg.Nothing)},
          deps=[lightgbm_baseline], kinds={"json"}, code_version="promotion-v1", automation_condition=REFRESH)
def promotion(context: dg.AssetExecutionContext, config: PromotionConfig, finai: FinAIConfig) -> dg.MaterializeResult:
    """Champion/challenger: promote the month's students only if every one passes the fidelity gate and
    none is worse than the champion's on the same held-out rows; every decision goes to the audit log."""
    from finai_models.distill.promotion import decide
    from finai_models.distill.students import evaluate_student

    s = finai.load()
    month = context.partition_key
    cfg = distill_config(s)
    paths = ArtifactPaths.of(s)
    inputs, folder = paths.student_inputs(month), paths.students(month)
    fidelity = {t.name: evaluate_student(cfg, t.name, folder / t.name, inputs) for t in cfg.tasks}
    reg = registry(s)
    decision = decide(cfg, month, folder, inputs, fidelity, reg.champion(), force=config.force)
    if config.force and config.reason:
        decision.reasons.append(f"operator: {config.reason}")
    entry = reg.record(decision, folder, context.run.run_id, fidelity)
    context.log.info(f"promotion {month}: {decision.action} ({'; '.join(decision.reasons)})")
    return dg.MaterializeResult(metadata={
        "decision": decision.action, "promoted": decision.promoted, "champion_before": decision.champion or "none",
        "reasons": dg.MetadataValue.md("\n".join(f"- {r}" for r in decision.reasons)),
        "audit_seq": entry["seq"], "audit_log": dg.MetadataValue.path(str(reg.audit.path)),
    })


def registry(s: Settings) -> "Registry":
    from finai_models.distill.promotion import Registry
    from finai_serving.audit import load_or_create_key

    paths = ArtifactPaths.of(s)
    return Registry(paths.registry(), load_or_create_key(paths.audit_key()))


def current_champion(s: Settings) -> dict:
    """The champion pointer, its audit record verified, with each task's recorded fidelity verdict."""
    reg = registry(s)
    pointer = reg.champion()
    if pointer is None:
        raise FinAIError("no promoted champion yet: train a teacher, distil its students and promote them "
                         "(jobs teacher, students, promote) before a month can be served")
    reg.audit.verify()
    entry = next(r for r in reg.audit.records() if r["seq"] == pointer["audit_seq"])
    return {**pointer, "fidelity": {t: f["passed"] for t, f in entry["fidelity"].items()},
            "reasons": entry["reasons"]}


@dg.asset(key=["distill", "champion"], group_name="distill", kinds={"json"}, code_version="champion-v1",
          deps=[dg.AssetDep(promotion, partition_mapping=dg.AllPartitionMapping())],
          automation_condition=ON_NEW_CHAMPION)
def champion(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """The students every month is served with: the registry's champion after the latest promotion decision
    (its audit record verified). Its data version changes only when another month's students are promoted."""
    s = finai.load()
    c = current_champion(s)
    context.log.info(f"champion: the students of {c['month']} ({c['decision']}, audit record {c['audit_seq']})")
    return dg.MaterializeResult(
        data_version=dg.DataVersion(f"{c['month']}:{c['audit_seq']}"),
        metadata={"month": c["month"], "decision": c["decision"], "audit_seq": c["audit_seq"],
                  "promoted_at": c["promoted_at"], "tasks_passed": sum(c["fidelity"].values()),
                  "students": dg.MetadataValue.path(c["students_dir"])})
