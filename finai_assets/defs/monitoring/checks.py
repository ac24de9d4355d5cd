"""Fairness gates (blocking: an unfair month is not released). The drift alarms are evaluated inside
``monitoring/drift`` itself (non-blocking; three critical months request a retrain)."""

import dagster as dg

from finai_assets.defs.monitoring.assets import fairness, fairness_of, fairness_table
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_assets.settings import settings
from finai_models.monitoring.config import monitoring_config


def _fairness_check(attribute: str) -> dg.AssetChecksDefinition:
    @dg.asset_check(asset=fairness, name=f"recommendations_fair_by_{attribute}", blocking=True,
                    partitions_def=snapshot_months,
                    description=f"By {attribute}, per product against the reference group: disparate impact within "
                                "its bounds, statistical-parity and equal-opportunity differences within theirs, "
                                "each judged on its confidence interval (configs/monitoring.yaml).")
    def _check(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
        from finai_models.monitoring.fairness import attribute_verdict

        report = fairness_of(finai.load(), context.partition_key)
        passed, summary = attribute_verdict(report, attribute)
        block = report["attributes"][attribute]
        return dg.AssetCheckResult(passed=passed, description=summary, metadata={
            "violations": dg.MetadataValue.json(block["violations"]),
            "not_observable": dg.MetadataValue.json(block["not_observable"]),
            "groups": dg.MetadataValue.json(block["groups"]), "reference": block["reference"],
            "table": dg.MetadataValue.md(fairness_table({"attributes": {attribute: block}})),
        })

    return _check


fairness_checks = [_fairness_check(a) for a in monitoring_config(settings())["fairness"]["attributes"]]
