"""The month's bundle answers as Lambda would, before anyone deploys it."""

import dagster as dg

from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.serving.assets import bundle
from finai_models.errors import FinAIError


@dg.asset_check(asset=bundle, blocking=True, partitions_def=snapshot_months,
                description="Unpacked into an empty folder, verified against its manifest and run in a clean "
                            "interpreter with only its runtime packages: it must recommend to a batch customer "
                            "with reasons that passed the Safety Gate, and answer a malformed request with a 400.")
def bundle_answers(context: dg.AssetCheckExecutionContext, finai: FinAIConfig) -> dg.AssetCheckResult:
    from finai_assets.defs.serving.invoke import first_batch_customer, invoke_bundle

    paths = finai.paths()
    month = context.partition_key
    zipped, state = paths.bundle(month), paths.bundle_check_state(month)
    customer = first_batch_customer(paths.serving_batch(month))
    try:
        answer, cold = invoke_bundle(zipped, {"action": "recommend", "customer_id": customer, "locale": "ko"}, state)
        bad, _ = invoke_bundle(zipped, {"action": "recommend"}, state)
    except FinAIError as exc:                 # refused (a file differs from the manifest) or the handler crashed
        return dg.AssetCheckResult(passed=False, metadata={"problems": dg.MetadataValue.json([str(exc)])})
    items = answer.get("recommendations", [])
    problems = []
    if answer.get("status") != 200 or not items:
        problems.append(f"recommend answered {str(answer)[:300]}")
    if any(not i["reason"]["safety_passed"] for i in items):
        problems.append("a shown reason did not pass the Safety Gate")
    if bad.get("status") != 400 or bad.get("error", {}).get("field") != "customer_id":
        problems.append(f"a request without customer_id answered {str(bad)[:300]}")
    rows = ["| rank | product | score | reason |", "|---:|---|---:|---|"]
    rows += [f"| {i['rank']} | {i['name']} | {i['score']:.2f} | {i['reason']['text']} |" for i in items]
    return dg.AssetCheckResult(passed=not problems, metadata={
        "problems": dg.MetadataValue.json(problems), "cold_start": cold, "customer": customer,
        "sample": dg.MetadataValue.md("\n".join(rows)),
    })
