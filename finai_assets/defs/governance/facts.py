"""The month's facts for the model card, gathered from the artifacts and the Dagster instance.

Everything the card says is read here from what the graph produced - the champion's audit record,
its teacher's and students' held-out metrics, the serving batch's gate weights, the replayed
recommendations, the drift report, the raw files' digests and the runs and checks recorded in the
instance - so the card cannot claim more than the month actually holds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np

from finai_assets.defs.distill.assets import current_champion
from finai_assets.defs.evidence import latest_check, latest_materialization, planned_in_run
from finai_assets.defs.monitoring.assets import fairness_of, read_drift, read_recommendations
from finai_models.artifacts import ArtifactPaths, current_version
from finai_models.config import Settings
from finai_models.data.raw_schema import TABLES
from finai_models.data.store import file_sha256, month_file, read_manifest
from finai_models.phase0.state import current_version as phase0_version

METRIC = {"binary": "auc", "multiclass": "macro_f1", "regression": "mae"}
INTENDED_USE = {
    "purpose": "Rank a bank's deposit, account, payment, card, pension, loan and fund products for an existing "
               "customer each month, with a per-customer reason, for bankers and digital channels to offer.",
    "users": "The bank's ML team (training, checks, promotion), operators (schedule, sensors, kill switch) and "
             "compliance (this card, audit log, opt-out and explanation requests).",
    "out_of_scope": "Credit decisions, pricing and any decision with legal effect on the customer; customers who "
                    "opted out of AI recommendations; products outside the catalogue of configs/serving.yaml.",
}


@dataclass(frozen=True)
class CodeLocation:
    """What the card needs from the asset graph the run was launched from, read from the run's
    repository through Dagster's public API: each asset's parents, code version, partitions and group,
    and every check."""

    parents: dict[dg.AssetKey, frozenset[dg.AssetKey]]
    code_versions: dict[dg.AssetKey, str | None]
    partitions: dict[dg.AssetKey, dg.PartitionsDefinition | None]
    groups: dict[dg.AssetKey, str]
    checks: tuple[dg.AssetCheckKey, ...]

    @classmethod
    def of(cls, repository: dg.RepositoryDefinition) -> CodeLocation:
        parents, versions, partitions, groups, checks = {}, {}, {}, {}, set(repository.asset_checks_defs_by_key)
        for assets in set(repository.assets_defs_by_key.values()):
            for key in assets.keys:
                parents[key] = frozenset(assets.asset_deps.get(key, ()))
                versions[key] = assets.get_asset_spec(key).code_version
                partitions[key] = assets.partitions_def
                groups[key] = assets.group_names_by_key.get(key, "default")
            checks |= {spec.key for spec in assets.check_specs}
        return cls(parents, versions, partitions, groups,
                   tuple(sorted(checks, key=lambda k: (k.asset_key.to_user_string(), k.name))))

    def ancestors(self, key: dg.AssetKey) -> list[dg.AssetKey]:
        """Every asset ``key`` depends on, for the lineage of runs that produced them."""
        seen, todo = set(), [key]
        while todo:
            for parent in self.parents.get(todo.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    todo.append(parent)
        return sorted(seen, key=lambda k: k.to_user_string())


class CodeLocationSource:
    """The code location's definitions, handed to the model card by ``definitions.py`` as the
    ``code_location`` resource: a run's context carries its repository only when the run was launched
    from a code location (UI, ``dg launch``), not under ``execute_in_process`` (``finai-pipeline``, tests)."""

    def __init__(self) -> None:
        self.definitions: dg.Definitions | None = None

    def graph(self) -> CodeLocation:
        if self.definitions is None:
            raise RuntimeError("the code location's definitions were never handed to the model card")
        return CodeLocation.of(self.definitions.get_repository_def())


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def model_facts(s: Settings, champion: dict[str, Any]) -> tuple[dict, list[dict], dict]:
    """The champion's teacher and students, each task's held-out metrics, and fidelity verdicts."""
    from finai_models.distill.config import distill_config
    from finai_models.distill.students import evaluate_student

    month = champion["month"]
    paths = ArtifactPaths.of(s)
    run = paths.teacher_run(month, "ple")
    teacher = _json(run / "metrics.json")
    baseline = _json(paths.lightgbm_run(month) / "metrics.json").get("test", {}).get("tasks", {})
    cfg = distill_config(s)
    students = Path(champion["students_dir"])
    tasks, fidelity, routes = [], {}, {}
    for task in s.tasks:
        result = evaluate_student(cfg, task.name, students / task.name, paths.student_inputs(month))
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
    folder = ArtifactPaths.of(s).serving_batch(month)
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
    return {"dataset": {"name": s.dataset.name, "source": s.dataset.source,
                        "fingerprint": manifest.get("fingerprint", "unknown")},
            "raw_files": raw_files, "phase0_state": phase0_version(s),
            "training_set": current_version(ArtifactPaths.of(s).training_sets()) or "none",
            "split": {k: list(v) for k, v in s.split.items()},
            "feature_groups": [{"name": g.name, "columns": g.dim} for g in s.feature_groups],
            "runs": latest_runs(instance, keys, month)}


def latest_runs(instance: dg.DagsterInstance, keys: list[dg.AssetKey], month: str) -> list[dict[str, Any]]:
    """The run that last materialized each upstream asset (the month's partition where it has one)."""
    out = []
    for key in keys:
        r = latest_materialization(instance, key, month) or latest_materialization(instance, key, None)
        if r is not None:
            out.append({"asset": key.to_user_string(), "run_id": r.run_id,
                        "timestamp": datetime.fromtimestamp(r.timestamp, UTC).isoformat(timespec="seconds")})
    return out


def check_facts(instance: dg.DagsterInstance, checks: list[tuple[dg.AssetCheckKey, list[str | None]]],
                run_id: str) -> list[dict[str, Any]]:
    """The latest evaluation of each check for the partitions that make up the month (``None``: an
    unpartitioned check). A check this very run has yet to evaluate is listed as pending, never with an
    older verdict: the card is written while the run's non-blocking and sibling checks may still run."""
    out = []
    for key, partitions in checks:
        for partition in partitions:
            row = {"asset": key.asset_key.to_user_string(), "check": key.name, "partition": partition}
            if planned_in_run(latest_check(instance, key, partition, finished_only=False), run_id):
                out.append({**row, "passed": None, "severity": None, "pending": True})
                continue
            done = latest_check(instance, key, partition)
            if done is not None and done.evaluation is not None:
                out.append({**row, "passed": done.evaluation.passed,
                            "severity": done.evaluation.severity.value, "run_id": done.run_id})
    return out


def month_facts(s: Settings, month: str, instance: dg.DagsterInstance, run_id: str, bundle_meta: dict[str, Any],
                card: dg.AssetKey, graph: CodeLocation) -> dict[str, Any]:
    champion = current_champion(s)
    model, tasks, fidelity = model_facts(s, champion)
    keys = graph.ancestors(card)
    model["code_versions"] = {k.to_user_string(): graph.code_versions[k] for k in keys if graph.code_versions.get(k)}
    return {"month": month, "generated_at": datetime.now(UTC).isoformat(timespec="seconds"), "system": "FinAI",
            "model": model, "tasks": tasks, "gate_weights": gate_weights(s, month), "fidelity": fidelity,
            "drift": read_drift(s, month), "fairness": fairness_of(s, month),
            "serving": serving_facts(s, month, bundle_meta),
            "lineage": lineage_facts(s, month, instance, keys),
            "checks": check_facts(instance, month_checks(graph, month, champion["month"], s), run_id),
            "intended_use": INTENDED_USE}


def month_checks(graph: CodeLocation, month: str, model_month: str, s: Settings
                 ) -> list[tuple[dg.AssetCheckKey, list[str | None]]]:
    """Each check with the partitions that belong to the month: the served month for its data and
    serving assets, the champion's month for the teacher and its students (one partition per task)."""
    out = []
    for key in graph.checks:
        partitions = graph.partitions.get(key.asset_key)
        if partitions is None:
            out.append((key, [None]))
        elif isinstance(partitions, dg.MultiPartitionsDefinition):
            out.append((key, [f"{model_month}|{t.name}" for t in s.tasks]))
        else:
            out.append((key, [model_month if graph.groups[key.asset_key] in ("teacher", "distill") else month]))
    return out
