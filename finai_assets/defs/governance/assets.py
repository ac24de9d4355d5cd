"""The monthly model card / governance report: Markdown and a self-contained HTML page with plots.

It runs after the month's recommendations and drift, and does not wait for the fairness gate: a
month whose fairness check failed (and so was not released) still gets its card, which says why.
"""

import json
import zipfile
from pathlib import Path

import dagster as dg

from finai_assets.defs.automation import REFRESH
from finai_assets.defs.distill.assets import champion
from finai_assets.defs.governance.facts import CodeLocationSource, month_facts
from finai_assets.defs.monitoring.assets import drift, recommendations
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.serving.assets import bundle
from finai_models.artifacts import ArtifactPaths, write_text_atomic
from finai_models.data.store import file_sha256


def bundle_facts(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        files = len(z.namelist())
    return {"path": str(path), "sha256": file_sha256(path), "zip_mb": round(path.stat().st_size / 2**20, 2),
            "files": files, "uri": "published by serving/release once the fairness checks pass"}


@dg.asset(key=["governance", "model_card"], group_name="governance", partitions_def=snapshot_months,
          deps=[champion, bundle, recommendations, drift], kinds={"html", "markdown"}, code_version="model-card-v1",
          automation_condition=REFRESH)
def model_card(context: dg.AssetExecutionContext, finai: FinAIConfig,
               code_location: dg.ResourceParam[CodeLocationSource]) -> dg.MaterializeResult:
    """Per-task metrics, gate weights, fidelity, drift, fairness, serving controls and the month's data
    lineage, with EU AI Act Annex IV and Korean FSC AI guideline sections filled from them."""
    from finai_models.governance.model_card import render_model_card

    s = finai.load()
    month = context.partition_key
    graph = code_location.graph()              # the whole code location: every check the month depends on
    facts = month_facts(s, month, context.instance, context.run.run_id, bundle_facts(ArtifactPaths.of(s).bundle(month)),
                        context.asset_key, graph)
    out = ArtifactPaths.of(s).model_card(month)
    write_text_atomic(out / "facts.json", json.dumps(facts, indent=1, default=str))
    card = render_model_card(facts, out)
    context.log.info(f"model card of {month}: {card['html']} ({len(card['plots'])} plots)")
    return dg.MaterializeResult(metadata={
        "html": dg.MetadataValue.path(card["html"]), "markdown": dg.MetadataValue.path(card["markdown"]),
        "plots": len(card["plots"]), "sections": len(card["sections"]),
        "empty_sections": dg.MetadataValue.json(card["empty_sections"]),
        "fairness_passed": facts["fairness"]["passed"], "drift_status": facts["drift"]["status"],
        "champion_month": facts["model"]["champion_month"],
    })
