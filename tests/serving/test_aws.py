"""The AWS side on a loopback moto server: the bundle published to S3 through dagster-aws, and the
handler's DynamoDB kill switch and opt-out store (the tables infra/template.yaml creates)."""

from __future__ import annotations

import hashlib
import uuid

import pytest

from finai_assets.defs.resources import BundleStore
from finai_serving.controls import KillSwitch, OptOuts
from finai_serving.handler import Service, handle

from .conftest import REGION, fake_client

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it


def _table(client, key: str) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": key, "KeyType": "HASH"}])
    return name


def test_the_bundle_is_published_to_s3_through_dagster_aws(serving_bundle, moto_endpoint, aws_env):
    s3 = fake_client("s3", moto_endpoint)
    s3.create_bucket(Bucket="finai-bundles")
    store = BundleStore(kind="s3", bucket="finai-bundles", endpoint_url=moto_endpoint, region_name=REGION)
    uri = store.publish(serving_bundle["zip"], "2025-12")
    assert uri == "s3://finai-bundles/bundles/2025-12/finai-2025-12.zip"
    body = s3.get_object(Bucket="finai-bundles", Key="bundles/2025-12/finai-2025-12.zip")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(serving_bundle["zip"].read_bytes()).digest()


def test_kill_switch_and_opt_outs_in_dynamodb(serving_bundle, moto_endpoint, aws_env, tmp_path):
    dynamo = fake_client("dynamodb", moto_endpoint)
    switches, optouts = _table(dynamo, "switch_key"), _table(dynamo, "customer_key")
    svc = Service(serving_bundle["root"], env={"FINAI_SERVING_STATE": str(tmp_path), "FINAI_AUDIT_FSYNC": "0"})
    svc.kill_switch = KillSwitch({"FINAI_KILL_SWITCH_TABLE": switches}, client=dynamo, tasks=list(svc.model.students))
    svc.optouts = OptOuts(table=optouts, client=dynamo)

    assert handle(svc, {"action": "recommend", "customer_id": "21"})["path"] == "model"
    dynamo.put_item(TableName=switches, Item={"switch_key": {"S": "task:churn_signal"}, "active": {"BOOL": True}})
    svc.kill_switch._cached = (-1e18, set())                      # skip the 30 s cache
    assert handle(svc, {"action": "predict", "customer_id": "21"})["served"]["churn_signal"] == "kill_switch"
    dynamo.put_item(TableName=switches, Item={"switch_key": {"S": "global"}, "active": {"BOOL": True}})
    svc.kill_switch._cached = (-1e18, set())
    assert handle(svc, {"action": "recommend", "customer_id": "21"})["path"] == "rule"

    assert handle(svc, {"action": "opt_out", "customer_id": "21"})["opted_out"] is True
    items = dynamo.scan(TableName=optouts)["Items"]
    assert len(items) == 1 and items[0]["customer_key"]["S"] != "21"          # an HMAC, never the raw id
    assert handle(svc, {"action": "recommend", "customer_id": "21"})["blocked"] == "ai_opt_out"
