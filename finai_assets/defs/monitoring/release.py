"""Publishing a month's bundle (``serving/release``): the last step, after it answered as Lambda would
(``bundle_answers``) and its replayed recommendations passed the fairness checks; both are blocking,
so a failed month never reaches ``bundle_store`` (local files, or S3 through dagster-aws). It lives
beside the replay and the fairness gate it waits for, so serving never imports monitoring."""

import dagster as dg

from finai_assets.defs.automation import REFRESH
from finai_assets.defs.monitoring.assets import fairness
from finai_assets.defs.partitions import snapshot_months
from finai_assets.defs.resources import BundleStore, FinAIConfig
from finai_assets.defs.serving.assets import bundle
from finai_models.data.store import file_sha256


@dg.asset(key=["serving", "release"], group_name="serving", partitions_def=snapshot_months,
          deps=[bundle, fairness], kinds={"s3"}, code_version="release-v1", automation_condition=REFRESH)
def release(context: dg.AssetExecutionContext, finai: FinAIConfig, bundle_store: BundleStore) -> dg.MaterializeResult:
    """The month's bundle published where the Lambda deployment picks it up, with its SHA-256."""
    month = context.partition_key
    path = finai.paths().bundle(month)
    uri = bundle_store.publish(path, month)
    digest = file_sha256(path)
    context.log.info(f"released {path.name} ({digest[:12]}) to {uri}")
    return dg.MaterializeResult(metadata={"uri": uri, "sha256": digest, "path": dg.MetadataValue.path(str(path))})
