"""The month's facts for the model card, gathered from the artifacts and the Dagster instance.

Everything the card says is read here from what the graph produced - the champion's audit record,
its teacher's and students' held-out metrics, the serving batch's gate weights, the replayed
recommendations, the drift report, the raw files' digests and the runs and checks recorded in the
instance - so the card cannot claim more than the month actually holds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
import numpy as np

from finai_assets.defs.distill.assets import current_champion, current_inputs
from finai_assets.defs.monitoring.assets import fairness_of, read_drift, read_recommendations
from finai_assets.defs.serving.assets import batch_dir
from finai_assets.defs.teacher.assets import _runs_root
from finai_models.config import Settings
from finai_models.data.raw_schema import TABLES
from finai_models.data.store import file_sha256, month_file, read_manifest
from finai_models.phase0.state import current_version
from finai_models.teacher.run import current_run

if TYPE_CHECKING:
    from dagster._core.definitions.asset_graph import AssetGraph

METRIC = {"binary": "auc", "multiclass": "macro_f1", "regression": "mae"}
INTENDED_USE = {
    "purpose": "Rank a bank's deposit, account, payment, card, pension, loan and fund products for an existing "
               "customer each month, with a per-customer reason, for bankers and digital channels to offer.",
    "users": "The bank's ML team (training, checks, promotion), operators (schedule, sensors, kill switch) and "
             "compliance (this card, audit log, opt-out and explanation requests).",
    "out_of_scope": "Credit decisions, pricing and any decision with legal effect on the customer; customers who "
                    "opted out of AI recommendations; products outside the catalogue of configs/serving.yaml.",
}


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def model_facts(s: Settings, champion: dict[str, Any]) -> tuple[dict, list[dict], dict]:
    """The champion's teacher and students, each task's held-out metrics, and fidelity verdicts."""
    from finai_models.distill.config import distill_config
    from finai_models.distill.students import evaluate_student

    month = champion["month"]
    run = current_run(_runs_root(s, month, "ple"))
    teacher = _json(run / "metrics.json")
    baseline = _json(_runs_root(s, month, "lightgbm") / "metrics.json").get("test", {}).get("tasks", {})
    cfg = distill_config(s)
    students = Path(champion["students_dir"])
    tasks, fidelity, routes = [], {}, {}
    for task in s.tasks:
        result = evaluate_student(cfg, task.name, students / task.name, current_inputs(s, month))
        routes[task.name] = result.route
        fidelity[task.name] = {"passed": result.passed, "metrics": result.metrics, "failures": result.failures}
        metric = METRIC[task.type]
        tasks.append({"name": task.name, "type": task.type, "metric": metric,
                      "teacher": result.metrics.get(f"teacher_{metric}",
                                                    teacher.get("test", {}).get("tasks", {}).get(task.name, {})
                                                    .get(metric)),
                      "student": result.metrics.get(f"student_{metric}"),
                      "baseline": baseline.get(task.name, {}).get(metric), "route": result.route})
    model = {"champion_month": month, "promoted_at": champion["promoted_at"], "audit_seq": champion["audit_seq"],
             "decision": champion["decision"], "reasons": champion["reasons"],
             "teacher": {"architecture": str(teacher.get("architecture", "ple")).upper(),
                         "experts": list(teacher.get("experts") or []), "run_dir": str(run),
                         "epochs": teacher.get("best_epoch"), "parameters": teacher.get("parameters")},
             "students": {"dir": str(students), "routes": routes}}
    return model, tasks, fidelity


def gate_weights(s: Settings, month: str) -> dict[str, dict[str, float]]:
    """Mean layer-0 gate weight per task and expert over the month's batch customers."""
    folder = batch_dir(s, month)
    population = _json(folder / "population.json")
    with np.load(folder / "customers.npz") as b:
        mean = b["gates"].mean(axis=0)
    return {t: {e: round(float(mean[i, j]), 4) for j, e in enumerate(population["experts"])}
            for i, t in enumerate(population["tasks"])}


def serving_facts(s: Settings, month: str, bundle_meta: dict[str, Any]) -> dict[str, Any]:
    table = read_recommendations(s, month)
    products = table["products"].to_pylist()
    shown: dict[str, float] = {}
    for ps in products:
        for p in ps:
            shown[p] = shown.get(p, 0) + 1 / len(products)
    paths = table["path"].to_pylist()
    return {"bundle": bundle_meta, "customers": len(products),
            "recommendations_per_customer": round(sum(map(len, products)) / max(len(products), 1), 2),
            "paths": {p: paths.count(p) for p in sorted(set(paths))},
            "top_products": {p: round(v, 3) for p, v in sorted(shown.items(), key=lambda kv: -kv[1])},
            "controls": {
                "kill_switch": "global or per task, from FINAI_KILL_SWITCH or a DynamoDB item; an unreadable "
                               "table counts as on (fail closed); while on, the rule fallback serves",
                "opt_out": "honoured before any model runs; recorded in the handler's audit chain",
                "audit": "HMAC-SHA256 hash chain of every recommendation, opt-out and explanation request; "
                         "promotion decisions in their own verified chain",
                "suitability": "fail-closed: without a risk grade only products needing no assessment are shown; "
                               "65+ capped at risk 2 (configs/serving.yaml constraints)"}}


def lineage_facts(s: Settings, month: str, instance: dg.DagsterInstance, keys: list[dg.AssetKey]
                  ) -> dict[str, Any]:
    manifest = read_manifest(s.raw_dir) or {}
    raw_files = []
    for table in TABLES:
        path = month_file(s.raw_dir, table, month)
        if path.is_file():
            raw_files.append({"table": table, "month": month, "path": str(path), "sha256": file_sha256(path),
                              "rows": (manifest.get("rows", {}).get(table, {}) or {}).get(month)})
    training = s.path("artifacts") / "training_set" / "CURRENT"
    return {"dataset": {"name": s.dataset.name, "source": s.dataset.source,
                        "fingerprint": manifest.get("fingerprint", "unknown")},
            "raw_files": raw_files, "phase0_state": current_version(s),
            "training_set": training.read_text().strip() if training.is_file() else "none",
            "split": {k: list(v) for k, v in s.split.items()},
            "feature_groups": [{"name": g.name, "columns": g.dim} for g in s.feature_groups],
            "runs": latest_runs(instance, keys, month)}


def latest_runs(instance: dg.DagsterInstance, keys: list[dg.AssetKey], month: str) -> list[dict[str, Any]]:
    """The run that last materialized each upstream asset (the month's partition where it has one)."""
    out = []
    for key in keys:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=[month]),
                                                  limit=1).records
        if not records:
            records = instance.fetch_materializations(key, limit=1).records
        if records:
            r = records[0]
            out.append({"asset": key.to_user_string(), "run_id": r.run_id,
                        "timestamp": datetime.fromtimestamp(r.timestamp, UTC).isoformat(timespec="seconds")})
    return out


def check_facts(instance: dg.DagsterInstance, checks: list[tuple[dg.AssetCheckKey, list[str | None]]],
                run_id: str) -> list[dict[str, Any]]:
    """The latest evaluation of each check for the partitions that make up the month (``None``: an
    unpartitioned check). A check this very run has yet to evaluate is listed as pending, never with an
    older verdict: the card is written while the run's non-blocking and sibling checks may still run."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus as Status

    out = []
    for key, partitions in checks:
        for partition in partitions:
            where = None if partition is None else PartitionKeyFilter(key=partition)
            row = {"asset": key.asset_key.to_user_string(), "check": key.name, "partition": partition}
            latest = instance.event_log_storage.get_asset_check_execution_history(key, limit=1,
                                                                                  partition_filter=where)
            if latest and latest[0].run_id == run_id and latest[0].status == Status.PLANNED:
                out.append({**row, "passed": None, "severity": None, "pending": True})
                continue
            done = instance.event_log_storage.get_asset_check_execution_history(
                key, limit=1, status={Status.SUCCEEDED, Status.FAILED}, partition_filter=where)
            if done and done[0].evaluation is not None:
                out.append({**row, "passed": done[0].evaluation.passed,
                            "severity": done[0].evaluation.severity.value, "run_id": done[0].run_id})
    return out


def month_facts(s: Settings, month: str, instance: dg.DagsterInstance, run_id: str, bundle_meta: dict[str, Any],
                keys: list[dg.AssetKey], graph: AssetGraph) -> dict[str, Any]:
    champion = current_champion(s)
    model, tasks, fidelity = model_facts(s, champion)
    model["code_versions"] = {k.to_user_string(): graph.get(k).code_version for k in keys
                              if graph.get(k).code_version}
    return {"month": month, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "system": "FinAI",
            "model": model, "tasks": tasks, "gate_weights": gate_weights(s, month), "fidelity": fidelity,
            "drift": read_drift(s, month), "fairness": fairness_of(s, month),
            "serving": serving_facts(s, month, bundle_meta),
            "lineage": lineage_facts(s, month, instance, keys),
            "checks": check_facts(instance, month_checks(graph, month, champion["month"], s), run_id),
            "intended_use": INTENDED_USE}


def month_checks(graph: AssetGraph, month: str, model_month: str, s: Settings
                 ) -> list[tuple[dg.AssetCheckKey, list[str | None]]]:
    """Each check with the partitions that belong to the month: the served month for its data and
    serving assets, the champion's month for the teacher and its students (one partition per task)."""
    out = []
    for key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        node = graph.get(key.asset_key)
        if node.partitions_def is None:
            out.append((key, [None]))
        elif isinstance(node.partitions_def, dg.MultiPartitionsDefinition):
            out.append((key, [f"{model_month}|{t.name}" for t in s.tasks]))
        else:
            out.append((key, [model_month if node.group_name in ("teacher", "distill") else month]))
    return out
