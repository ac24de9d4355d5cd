"""Serving: the month's batch (per-customer teacher gate weights, percentile grids) and its Lambda bundle.

``serving/batch`` runs after promotion on the promoted students; ``serving/bundle`` zips the
handler, those students and the batch, refuses a month whose students were not promoted, and
publishes the zip through the ``bundle_store`` resource (local files, or S3 via dagster-aws).
"""

import json
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from finai_assets.defs.distill.assets import audit_key_path, current_inputs, promotion
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import BundleStore, FinAIConfig
from finai_assets.defs.teacher.assets import _runs_root, ple
from finai_models.config import Settings
from finai_models.errors import FinAIError


def batch_dir(s: Settings, month: str) -> Path:
    return s.path("artifacts") / "serving" / month / "batch"


def bundle_path(s: Settings, month: str) -> Path:
    return s.path("artifacts") / "bundles" / f"finai-{month}.zip"


def promoted(s: Settings, month: str) -> tuple[Path, dict[str, bool]]:
    """The promoted students of ``month`` and their recorded fidelity verdicts; refuses any other month."""
    from finai_models.distill.promotion import Registry
    from finai_serving.audit import load_or_create_key

    registry = Registry(s.path("artifacts") / "distill" / "registry", load_or_create_key(audit_key_path(s)))
    champion = registry.champion()
    if champion is None or champion["month"] != month:
        raise FinAIError(f"the students of {month} are not the promoted champion (champion: "
                         f"{champion['month'] if champion else 'none'}); no bundle is built from unpromoted students")
    registry.audit.verify()
    entry = next(r for r in registry.audit.records() if r["seq"] == champion["audit_seq"])
    return Path(champion["students_dir"]), {t: f["passed"] for t, f in entry["fidelity"].items()}


@dg.asset(key=["serving", "batch"], group_name="serving", partitions_def=snapshot_months, deps=[promotion, ple],
          kinds={"pytorch", "numpy"}, code_version="serving-batch-v1")
def batch(context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Per customer: raw features and the teacher's gate weights; per month: the gate student, the
    percentile grid of every task output, product popularity and label priors."""
    from finai_models.serving.batch import build_batch, phase0_rows
    from finai_models.serving.config import serving_config
    from finai_models.teacher.data import read_schema
    from finai_models.teacher.run import current_run
    from finai_models.teacher.service import default_training_set

    s = finai.load()
    month = context.partition_key
    students, _ = promoted(s, month)
    teacher = current_run(_runs_root(s, month, "ple")) / "teacher.pt"
    cfg = serving_config(s)
    schema = read_schema(default_training_set(s))
    with warehouse.get_connection() as con:
        rows = phase0_rows(con, s, month, schema, int(cfg["batch"]["max_customers"]))
    summary = build_batch(rows, schema, cfg, teacher, students, current_inputs(s, month), batch_dir(s, month),
                          seed=int(s.phase0["seed"]), log=context.log.info)
    gate = summary["gate_student"]
    return dg.MaterializeResult(metadata={
        "customers": summary["customers"], "seconds": summary["seconds"],
        "gate_student_mae": gate.get("mae", float("nan")), "gate_prior_mae": gate.get("prior_mae", float("nan")),
        "gate_top_expert_agreement": gate.get("top_expert_agreement", float("nan")),
        "popularity": dg.MetadataValue.json(summary["popularity"]),
        "path": dg.MetadataValue.path(str(batch_dir(s, month))),
    })


@dg.asset(key=["serving", "bundle"], group_name="serving", partitions_def=snapshot_months, deps=[batch],
          kinds={"zip", "s3"}, code_version="bundle-v2")
def bundle(context: dg.AssetExecutionContext, finai: FinAIConfig, bundle_store: BundleStore) -> dg.MaterializeResult:
    """One zip per month: the handler package, the promoted students with their dumped trees, the batch,
    catalogue, constraints and reason templates, and a SHA-256 manifest; then published."""
    from finai_models.serving.config import serving_config
    from finai_serving.bundle import build_bundle

    s = finai.load()
    month = context.partition_key
    students, passed = promoted(s, month)
    routes = {t: json.loads((students / t / "student.json").read_text())["route"] for t in passed}
    out = bundle_path(s, month)
    manifest = build_bundle(students, passed, batch_dir(s, month), serving_config(s), out,
                            {"month": month, "routes": routes})
    uri = bundle_store.publish(out, month)
    context.log.info(f"bundle {out.name}: {manifest['zip_bytes'] / 2**20:.1f} MB, published to {uri}")
    return dg.MaterializeResult(metadata={
        "files": len(manifest["files"]), "zip_mb": round(manifest["zip_bytes"] / 2**20, 2),
        "unzipped_mb": round(manifest["unzipped_bytes"] / 2**20, 2), "uri": uri,
        "path": dg.MetadataValue.path(str(out)),
    })
