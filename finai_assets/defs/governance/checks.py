"""The model card is complete: every section has content and every plot was drawn."""

import json

import dagster as dg

from finai_assets.defs.governance.assets import model_card
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig

PNG = b"\x89PNG\r\n\x1a\n"


@dg.asset_check(asset=model_card, partitions_def=snapshot_months,
                description="No empty section (Annex IV and FSC included), every plot a real PNG, and the HTML "
                            "carries every plot inline.")
def model_card_complete(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
    from finai_models.governance.model_card import build_sections, empty_sections

    out = finai.paths().model_card(context.partition_key)
    facts = json.loads((out / "facts.json").read_text())
    empty = empty_sections(build_sections(facts))
    plots = sorted((out / "plots").glob("*.png"))
    bad = [p.name for p in plots if not p.read_bytes().startswith(PNG)]
    html = (out / "model_card.html").read_text()
    inline = html.count("data:image/png;base64,")
    problems = [f"empty sections: {empty}"] * bool(empty) + [f"not PNG: {bad}"] * bool(bad)
    if not plots or inline < len(plots):
        problems.append(f"{len(plots)} plots drawn, {inline} inline in the HTML")
    return dg.AssetCheckResult(passed=not problems, metadata={
        "problems": dg.MetadataValue.json(problems), "plots": len(plots), "inline_images": inline})
