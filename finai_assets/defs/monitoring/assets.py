"""Monitoring of a served month: what the bundle recommends, its fairness, and drift.

``monitoring/recommendations`` replays the month's bundle through the handler for every batch
customer and keeps, per customer, the protected attributes, the recommended products, whether
the customer turned out to want each product (where the label window has closed) and the 13 task
outputs. ``monitoring/fairness`` judges those recommendations by age band and gender (blocking
checks: an unfair month is not released). ``monitoring/drift`` compares the month's features with
the champion's last training month and its predictions with the month before (non-blocking
checks; three critical months in a row request a retrain through ``sensors.drift_retrain``).
"""

import json

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from dagster_duckdb import DuckDBResource

from finai_assets.defs.automation import REFRESH
from finai_assets.defs.features.assets import feature_group_assets
from finai_assets.defs.labels.assets import LABEL_SCHEMA, labels
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.raw.assets import customers
from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.serving.assets import bundle
from finai_models import months as M
from finai_models.artifacts import ArtifactPaths, write_atomic, write_text_atomic
from finai_models.config import Settings
from finai_models.errors import FinAIError
from finai_models.monitoring.config import monitoring_config

PREVIOUS_AND_THIS = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=0,
                                                  allow_nonexistent_upstream_partitions=True)


def read_recommendations(s: Settings, month: str) -> pa.Table:
    path = ArtifactPaths.of(s).recommendations(month)
    if not path.is_file():
        raise FinAIError(f"no recommendations replayed for {month} ({path}); materialize "
                         f"monitoring/recommendations for {month} first")
    return pq.read_table(path)


def fairness_of(s: Settings, month: str) -> dict:
    """The fairness report of the month's replayed recommendations (the checks, the release and the
    model card all call this one function on the same table)."""
    from finai_models.monitoring.fairness import fairness_report
    from finai_models.monitoring.replay import read_flags

    table = read_recommendations(s, month)
    cfg = monitoring_config(s)["fairness"]
    attributes = {a: table[a].to_numpy(zero_copy_only=False).astype(str) for a in cfg["attributes"]}
    return fairness_report(read_flags(table, "recommended__", bool), read_flags(table, "qualified__", float),
                           attributes, cfg)


@dg.asset(key=["monitoring", "recommendations"], group_name="monitoring", partitions_def=snapshot_months,
          deps=[bundle, labels, customers], kinds={"parquet"}, code_version="recommendations-v1",
          automation_condition=REFRESH)
def recommendations(context: dg.AssetExecutionContext, finai: FinAIConfig,
                    warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Every batch customer's top-k from the month's bundle (through the handler), with age band, gender,
    whether they acquired each product after the month, and the 13 task outputs."""
    from finai_models.monitoring.fairness import age_band
    from finai_models.monitoring.replay import qualified, replay_bundle, replay_table

    s = finai.load()
    month = context.partition_key
    cfg = monitoring_config(s)["fairness"]["attributes"]
    replay = replay_bundle(ArtifactPaths.of(s).bundle(month))
    ids = [int(c) for c in replay.customer_id]
    with warehouse.get_connection() as con:
        con.register("_ids", pa.table({"customer_id": pa.array(ids, pa.int64()), "pos": np.arange(len(ids))}))
        people = con.sql("""SELECT i.pos, c.birth_year, c.gender FROM _ids i LEFT JOIN raw.customers c
                            ON c.customer_id = i.customer_id AND c.month = ? ORDER BY i.pos""",
                         params=[M.first_day(month)]).fetchnumpy()
        label_rows = con.sql(f"""SELECT l.* FROM _ids i LEFT JOIN {LABEL_SCHEMA}.labels l
                                 ON l.customer_id = i.customer_id AND l.month = ? ORDER BY i.pos""",
                             params=[M.first_day(month)]).fetchnumpy()
        con.unregister("_ids")
    birth = np.ma.filled(np.ma.asarray(people["birth_year"]).astype(np.float64), np.nan)
    age = int(month[:4]) - birth
    attributes = {"age_band": age_band(age, cfg["age_band"]["edges"], cfg["age_band"]["labels"]),
                  "gender": np.array([g if g is not None else "unknown" for g in people["gender"]], object)}
    outcome = qualified(replay.catalogue, {t.name: np.ma.filled(np.ma.asarray(label_rows[t.name]).astype(
        np.float64), np.nan) for t in s.tasks})
    table = replay_table(replay, attributes, age, outcome)
    path = ArtifactPaths.of(s).recommendations(month)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    shown = {p["id"]: round(float(np.mean([p["id"] in ps for ps in replay.products])), 3) for p in replay.catalogue}
    observable = sorted(p for p, v in outcome.items() if np.isfinite(v).any())
    context.log.info(f"{len(ids):,} customers replayed through the bundle of {month} (students of "
                     f"{replay.model_month}); outcomes observable for {observable or 'no product yet'}")
    return dg.MaterializeResult(metadata={
        "dagster/partition_row_count": dg.MetadataValue.int(len(ids)), "model_month": replay.model_month,
        "share_recommended": dg.MetadataValue.json(shown), "rule_path": replay.path.count("rule"),
        "outcomes_observable": dg.MetadataValue.json(observable), "path": dg.MetadataValue.path(str(path)),
    })


@dg.asset(key=["monitoring", "fairness"], group_name="monitoring", partitions_def=snapshot_months,
          deps=[recommendations], kinds={"json"}, code_version="fairness-v1", automation_condition=REFRESH)
def fairness(context: dg.AssetExecutionContext, finai: FinAIConfig) -> dg.MaterializeResult:
    """Disparate impact, statistical-parity and equal-opportunity differences of the month's recommendations
    per product, by age band and gender against each attribute's reference group."""
    s = finai.load()
    month = context.partition_key
    report = fairness_of(s, month)
    path = ArtifactPaths.of(s).fairness_report(month)
    write_text_atomic(path, json.dumps(report, indent=1))
    return dg.MaterializeResult(metadata={
        "passed": report["passed"], "path": dg.MetadataValue.path(str(path)),
        **{f"{a}_violations": len(r["violations"]) for a, r in report["attributes"].items()},
        "table": dg.MetadataValue.md(fairness_table(report)),
    })


def fairness_table(report: dict) -> str:
    rows = ["| attribute | product | group | rate | reference rate | DI | SPD | EOD | verdict |",
            "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for attribute, block in report["attributes"].items():
        for r in block["rows"]:
            eod = "-" if r["opportunity_difference"] is None else f"{r['opportunity_difference']:+.3f}"
            verdict = ", ".join(r["violations"]) or ("ok" if r["judged"] else "not judged (small group)")
            rows.append(f"| {attribute} | {r['product']} | {r['group']} | {r['rate']:.3f} | {r['rate_reference']:.3f} "
                        f"| {r['disparate_impact']:.2f} | {r['parity_difference']:+.3f} | {eod} | {verdict} |")
    return "\n".join(rows)


DRIFT = ["monitoring", "drift"]
SEVERITY = {"warning": dg.AssetCheckSeverity.WARN, "critical": dg.AssetCheckSeverity.ERROR}


@dg.asset(key=DRIFT, group_name="monitoring", partitions_def=snapshot_months,
          deps=[dg.AssetDep(recommendations, partition_mapping=PREVIOUS_AND_THIS), *feature_group_assets],
          kinds={"json"}, code_version="drift-v1", automation_condition=REFRESH, check_specs=[
              dg.AssetCheckSpec("feature_psi_within_limits", asset=DRIFT, partitions_def=snapshot_months,
                                description="Feature PSI against the champion's last training month: warning at 0.1 "
                                            "(WARN), critical at 0.25 on enough columns (ERROR); never blocks."),
              dg.AssetCheckSpec("prediction_psi_within_limits", asset=DRIFT, partitions_def=snapshot_months,
                                description="PSI of each task's predictions against the month before: warning at "
                                            "0.1 (WARN), critical at 0.25 (ERROR); passes with no month before."),
          ])
def drift(context: dg.AssetExecutionContext, finai: FinAIConfig, warehouse: DuckDBResource) -> dg.MaterializeResult:
    """Feature PSI of the month against the champion's last training month, prediction PSI against the
    month before, and the run of consecutive critical months that requests a retrain. Its two checks are
    evaluated with it, so everything downstream (the model card) sees this month's verdicts."""
    from finai_models.monitoring.drift import drift_report, feature_drift, prediction_drift
    from finai_models.monitoring.features import feature_sample
    from finai_models.monitoring.replay import read_outputs

    s = finai.load()
    month = context.partition_key
    cfg = monitoring_config(s)["drift"]
    reference = s.split["train"][1]
    with warehouse.get_connection() as con:
        ref_x, columns, groups = feature_sample(con, s, reference, int(cfg["sample_rows"]))
        cur_x, cur_columns, _ = feature_sample(con, s, month, int(cfg["sample_rows"]))
    if cur_columns != columns:
        raise FinAIError(f"the features of {month} have other columns than those of {reference}; re-materialize "
                         "both with the same Phase-0 state")
    features = feature_drift(ref_x, cur_x, columns, groups, cfg)
    previous = M.shift(month, -1)
    before = ArtifactPaths.of(s).recommendations(previous)
    previous_outputs = read_outputs(pq.read_table(before)) if before.is_file() else None
    predictions = prediction_drift(previous_outputs, read_outputs(read_recommendations(s, month)), cfg)
    history = [(m, json.loads(p.read_text())["status"])
               for m, p in ArtifactPaths.of(s).drift_reports().items() if m < month]
    report = drift_report(month, reference, previous if previous_outputs is not None else None, features,
                          predictions, history, cfg)
    path = ArtifactPaths.of(s).drift_report(month)
    write_text_atomic(path, json.dumps(report, indent=1))
    context.log.info(f"drift {month}: features {report['feature_status']} (max PSI {features['max_psi']:.3f}), "
                     f"predictions {report['prediction_status']}; critical streak {report['critical_streak']}")
    top = ["| feature | group | PSI | severity |", "|---|---|---:|---|"]
    top += [f"| {t['feature']} | {t['group']} | {t['psi']:.3f} | {t['severity']} |" for t in features["top"][:10]]
    return dg.MaterializeResult(metadata={
        "status": report["status"], "feature_status": report["feature_status"],
        "prediction_status": report["prediction_status"], "max_feature_psi": features["max_psi"],
        "features_warning": features["warning"], "features_critical": features["critical"],
        "max_prediction_psi": predictions["max_psi"], "critical_streak": report["critical_streak"],
        "retrain_requested": report["retrain_requested"], "reference_month": reference,
        "top_features": dg.MetadataValue.md("\n".join(top)), "path": dg.MetadataValue.path(str(path)),
    }, check_results=[_drift_check(report, "feature"), _drift_check(report, "prediction")])


def _drift_check(report: dict, kind: str) -> dg.AssetCheckResult:
    status, block = report[f"{kind}_status"], report[f"{kind}s"]
    return dg.AssetCheckResult(
        check_name=f"{kind}_psi_within_limits", passed=status in ("ok", "not_available"),
        severity=SEVERITY.get(status, dg.AssetCheckSeverity.WARN),
        description=f"{kind}s: {status} (max PSI {block['max_psi']:.3f}; warning {report['thresholds']['warning']}, "
                    f"critical {report['thresholds']['critical']})",
        metadata={"status": status, "max_psi": float(block["max_psi"]), "critical_streak": report["critical_streak"],
                  "retrain_requested": report["retrain_requested"]})


def read_drift(s: Settings, month: str) -> dict:
    path = ArtifactPaths.of(s).drift_report(month)
    if not path.is_file():
        raise FinAIError(f"no drift report for {month}; materialize monitoring/drift for {month} first")
    return json.loads(path.read_text())
