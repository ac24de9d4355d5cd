"""Serving: the month's batch and its Lambda bundle, built from the champion students.

``serving/batch`` scores the month's customers with the current champion (``distill/champion``,
whatever month its students were trained in) and keeps their features, the champion teacher's
gate weights and percentile grids; ``serving/bundle`` zips the handler, those students and the
batch, and refuses when the champion changed since the batch was built. Publication is
``serving/release`` (``monitoring/release.py``), after the month's recommendations passed the fairness checks.
"""

import json
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from finai_assets.defs.automation import REFRESH
from finai_assets.defs.distill.assets import champion, current_champion
from finai_assets.defs.features.assets import feature_group_assets, month_inputs
from finai_assets.defs.labels.assets import labels
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_models.artifacts import ArtifactPaths, write_text_atomic
from finai_models.config import Settings
from finai_models.data.store import file_sha256
from finai_models.errors import FinAIError


def batch_champion(s: Settings, month: str) -> dict:
    """The champion the month's batch was built with; the bundle refuses any other."""
    path = ArtifactPaths.of(s).batch_champion(month)
    if not path.is_file():
        raise FinAIError(f"no serving batch for {month}; materialize serving/batch for {month} first")
    built = json.loads(path.read_text())
    now = current_champion(s)
    if (built["month"], built["audit_seq"]) != (now["month"], now["audit_seq"]):
        raise FinAIError(f"the serving batch of {month} was built with the students of {built['month']} but the "
                         f"champion is now {now['month']}; re-materialize serving/batch for {month}")
    return now


@dg.asset(key=["serving", "batch"], group_name="serving", partitions_def=snapshot_months,
          deps=[champion, month_inputs, labels, *feature_group_assets], kinds={"pytorch", "numpy"},
          code_version="serving-batch-v3", automation_condition=REFRESH)
def batch(context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Per customer of the month: raw features and the champion teacher's gate weights; per month: the gate
    student, the percentile grid of every task output, product popularity and label priors."""
    from finai_models.serving.batch import build_batch, phase0_rows
    from finai_models.serving.config import serving_config
    from finai_models.teacher.data import read_schema

    s = finai.load()
    paths = ArtifactPaths.of(s)
    month = context.partition_key
    chosen = current_champion(s)
    trained = chosen["month"]
    teacher = paths.teacher_run(trained, "ple") / "teacher.pt"
    cfg = serving_config(s)
    schema = read_schema(paths.current_training_set())
    with warehouse.get_connection() as con:
        rows = phase0_rows(con, s, month, schema, int(cfg["batch"]["max_customers"]))
    summary = build_batch(rows, schema, cfg, teacher, Path(chosen["students_dir"]), paths.student_inputs(trained),
                          paths.serving_batch(month), seed=int(s.phase0.seed), log=context.log.info)
    write_text_atomic(paths.batch_champion(month), json.dumps(
        {k: chosen[k] for k in ("month", "audit_seq", "students_dir", "promoted_at")}))
    gate = summary["gate_student"]
    return dg.MaterializeResult(metadata={
        "model_month": trained, "customers": summary["customers"], "seconds": summary["seconds"],
        "gate_student_mae": gate.get("mae", float("nan")), "gate_prior_mae": gate.get("prior_mae", float("nan")),
        "gate_top_expert_agreement": gate.get("top_expert_agreement", float("nan")),
        "popularity": dg.MetadataValue.json(summary["popularity"]),
        "path": dg.MetadataValue.path(str(paths.serving_batch(month))),
    })


@dg.asset(key=["serving", "bundle"], group_name="serving", partitions_def=snapshot_months, deps=[batch],
          kinds={"zip"}, code_version="bundle-v3", automation_condition=REFRESH)
def bundle(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """One zip per month: the handler package, the champion students with their dumped trees, the batch,
    catalogue, constraints and reason templates, and a SHA-256 manifest."""
    from finai_models.serving.config import serving_config
    from finai_serving.bundle import build_bundle

    s = finai.load()
    paths = ArtifactPaths.of(s)
    month = context.partition_key
    chosen = batch_champion(s, month)
    students, passed = Path(chosen["students_dir"]), chosen["fidelity"]
    routes = {t: json.loads((students / t / "student.json").read_text())["route"] for t in passed}
    out = paths.bundle(month)
    manifest = build_bundle(students, passed, paths.serving_batch(month), serving_config(s), out,
                            {"month": month, "model_month": chosen["month"], "routes": routes})
    context.log.info(f"bundle {out.name}: {manifest['zip_bytes'] / 2**20:.1f} MB, students of {chosen['month']}")
    return dg.MaterializeResult(metadata={
        "model_month": chosen["month"], "files": len(manifest["files"]),
        "zip_mb": round(manifest["zip_bytes"] / 2**20, 2), "unzipped_mb": round(manifest["unzipped_bytes"] / 2**20, 2),
        "sha256": file_sha256(out), "path": dg.MetadataValue.path(str(out)),
    })

