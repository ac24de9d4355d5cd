"""infra/template.yaml: cfn-lint clean, the serving contract and least privilege hold, and moto deploys it.

``template_problems`` states the contract (handler path, sizing, exact grants per resource, env vars
that resolve to the right tables, table keys, a bucket that cannot go public); each guard in it has
a test that breaks the template and expects the problem to be named.

Moto (5.2) deploys every resource but skips some properties and one resource type, silently; those
are checked on the template (above, and by cfn-lint's schemas) and not on moto's state:
AWS::S3::BucketPolicy (not supported: moto warns and lists it without a logical id), bucket
versioning, public access block and ownership controls, DynamoDB TTL and point-in-time recovery.
Moto also returns a CloudFormation inline role policy as the Python repr of a dict, not JSON; leaves
a role's policy as created when a stack update changes it (so only the first deploy's policy is
checked); and accepts a function whose S3 object is missing (code size 0), so the test uploads the
bundle first and checks the function's code size and SHA-256 against it.
"""

from __future__ import annotations

import ast
import base64
import copy
import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode.decode import decode_str
from moto.server import ThreadedMotoServer

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

TEMPLATE = Path(__file__).resolve().parents[2] / "infra" / "template.yaml"
HANDLER = "finai_serving.handler.handler"
REGION = "eu-west-1"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:123456789012:secret:finai-audit-key-AbCdEf"

# Every Allow of the function role, by the resource or parameter it targets: nothing more, nothing less.
GRANTS = {
    "BundleBucket": {"s3:GetObject", "s3:GetObjectVersion"},
    "KillSwitchTable": {"dynamodb:GetItem"},
    "OptOutTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
    "ReasonCacheTable": {"dynamodb:GetItem", "dynamodb:PutItem"},
    "BedrockModelId": {"bedrock:InvokeModel"},
    "BedrockFoundationModelId": {"bedrock:InvokeModel"},
    "AuditKeySecretArn": {"secretsmanager:GetSecretValue"},
    "LogGroup": {"logs:CreateLogStream", "logs:PutLogEvents"},
}
TABLE_ENV = {"FINAI_KILL_SWITCH_TABLE": "KillSwitchTable", "FINAI_OPTOUT_TABLE": "OptOutTable",
             "FINAI_REASON_CACHE_TABLE": "ReasonCacheTable"}
ENV = {*TABLE_ENV, "FINAI_L2A", "FINAI_AUDIT_KEY_SECRET_ARN", "FINAI_BEDROCK_MODEL_ID"}
KEYS = {"KillSwitchTable": [("switch_key", "HASH")], "OptOutTable": [("customer_key", "HASH")],
        "ReasonCacheTable": [("pk", "HASH"), ("sk", "RANGE")]}


def load_template() -> dict[str, Any]:
    """The template as plain JSON data, short forms (!Ref, !GetAtt) expanded as CloudFormation reads them."""
    template, errors = decode_str(TEMPLATE.read_text())
    assert not errors, errors
    return json.loads(json.dumps(template))


def _targets(resource: Any, region_wildcard: bool = False) -> list[str]:
    """The logical ids and parameters a policy Resource names (both branches of an Fn::If); "*" for a
    wildcard, except an S3 object suffix "/*" and, when ``region_wildcard``, a Bedrock ARN's Region."""
    if isinstance(resource, list):
        return [t for r in resource for t in _targets(r, region_wildcard)]
    if isinstance(resource, dict) and "Fn::If" in resource:
        return _targets(resource["Fn::If"][1:], region_wildcard)
    if isinstance(resource, dict) and "Fn::GetAtt" in resource:
        return [resource["Fn::GetAtt"][0]]
    if isinstance(resource, dict) and "Ref" in resource:
        return [resource["Ref"]]
    text = resource["Fn::Sub"] if isinstance(resource, dict) else resource
    refs = [m.split(".")[0] for m in re.findall(r"\$\{([^}]+)\}", text) if not m.startswith("AWS::")]
    literal = re.sub(r"\$\{[^}]+\}", "", text).removesuffix("/*")
    if "*" in (literal.replace(":bedrock:*:", ":bedrock::") if region_wildcard else literal):
        return ["*"]
    return refs or [text]


def role_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The FunctionRole's statements, each branch of a conditional statement included."""
    out = []
    for policy in template["Resources"]["FunctionRole"]["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            out += [b for b in (st["Fn::If"][1:] if "Fn::If" in st else [st]) if b != {"Ref": "AWS::NoValue"}]
    return out


def role_grants(template: dict[str, Any], problems: list[str]) -> dict[str, set[str]]:
    """Allowed actions per target of the FunctionRole; wildcards are reported into ``problems``.

    A foundation model may be granted in any Region only to calls through one inference profile: the
    statement must pin ``bedrock:InferenceProfileArn``.
    """
    grants: dict[str, set[str]] = {}
    for st in role_statements(template):
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        problems += [f"wildcard action {a!r} in {st.get('Sid')}" for a in actions if "*" in a]
        pinned = "bedrock:InferenceProfileArn" in st.get("Condition", {}).get("StringEquals", {})
        for target in _targets(st["Resource"], region_wildcard=pinned):
            if target == "*":
                problems.append(f"wildcard resource in {st.get('Sid')}")
            grants.setdefault(target, set()).update(actions)
    return grants


def template_problems(template: dict[str, Any]) -> list[str]:
    """Every way ``template`` breaks the serving contract; empty when it holds."""
    problems: list[str] = []
    res, params = template["Resources"], template.get("Parameters", {})
    fn = res["Function"]["Properties"]
    if fn.get("Handler") != HANDLER:
        problems.append(f"Handler is {fn.get('Handler')!r}, not {HANDLER!r}")
    sizing = {k: fn.get(k) for k in ("Runtime", "MemorySize", "Timeout")}
    if sizing != {"Runtime": "python3.12", "MemorySize": 1024, "Timeout": 10}:
        problems.append(f"runtime/memory/timeout are {sizing}")
    if fn["Code"] != {"S3Bucket": {"Ref": "BundleBucket"}, "S3Key": {"Ref": "BundleKey"}}:
        problems.append(f"code does not come from the bundle bucket and key: {fn['Code']}")

    grants = role_grants(template, problems)
    for target in sorted(grants.keys() - {"*"}):
        if target not in res and target not in params:
            problems.append(f"the role grants on {target}, which the template does not define")
        elif any(a.startswith("dynamodb:") for a in grants[target]) and res.get(target, {}).get("Type") != \
                "AWS::DynamoDB::Table":
            problems.append(f"the role grants DynamoDB actions on {target}, which is not a table")
    if grants != GRANTS:
        problems.append(f"role grants differ from least privilege: {grants} != {GRANTS}")

    env = fn.get("Environment", {}).get("Variables", {})
    if ENV - env.keys():
        problems.append(f"environment lacks {sorted(ENV - env.keys())}")
    for name, value in env.items():
        ref = value.get("Ref") if isinstance(value, dict) else None
        if ref is not None and ref not in res and ref not in params:
            problems.append(f"{name} refers to {ref}, which the template does not define")
    for name, table in TABLE_ENV.items():
        if env.get(name) != {"Ref": table} or res.get(table, {}).get("Type") != "AWS::DynamoDB::Table":
            problems.append(f"{name} does not name the {table} table")

    for table, keys in KEYS.items():
        props = res.get(table, {}).get("Properties", {})
        if [(k["AttributeName"], k["KeyType"]) for k in props.get("KeySchema", [])] != keys:
            problems.append(f"{table} key schema is not {keys}")
        if props.get("BillingMode") != "PAY_PER_REQUEST":
            problems.append(f"{table} is not PAY_PER_REQUEST")
    if res.get("ReasonCacheTable", {}).get("Properties", {}).get("TimeToLiveSpecification") != \
            {"AttributeName": "ttl", "Enabled": True}:
        problems.append("ReasonCacheTable has no TTL on 'ttl'")

    bucket = res["BundleBucket"]["Properties"]
    block = bucket.get("PublicAccessBlockConfiguration", {})
    flags = ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
    if not all(block.get(f) is True for f in flags) or "AccessControl" in bucket:
        problems.append("the bundle bucket can be made public")
    if bucket.get("VersioningConfiguration") != {"Status": "Enabled"} or "BucketEncryption" not in bucket:
        problems.append("the bundle bucket is not versioned and encrypted")
    for r in res.values():
        if r["Type"] == "AWS::S3::BucketPolicy":
            for st in r["Properties"]["PolicyDocument"]["Statement"]:
                if st["Effect"] == "Allow" and st.get("Principal") in ("*", {"AWS": "*"}):
                    problems.append("a bucket policy allows everyone")
    return problems


# --- the template as written ---------------------------------------------------------------------

def test_cfn_lint_reports_nothing():
    matches = lint(TEMPLATE.read_text(), config=ManualArgs(regions=[REGION, "us-east-1"], include_checks=["I"]))
    assert matches == [], "\n".join(f"{m.rule.id} line {m.linenumber}: {m.message}" for m in matches)


def test_cfn_lint_catches_an_invalid_template():
    broken = load_template()
    broken["Resources"]["Function"]["Properties"]["Timeoutt"] = 10
    broken["Resources"]["Function"]["Properties"]["Runtime"] = "python3.99"
    ids = {m.rule.id for m in lint(json.dumps(broken), config=ManualArgs(regions=[REGION]))}
    assert any(i.startswith("E") for i in ids), ids


def test_the_template_meets_the_serving_contract():
    assert template_problems(load_template()) == []


def _statement(t: dict, sid: str) -> dict:
    return next(s for s in role_statements(t) if s["Sid"] == sid)


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def mutate(t: dict) -> None:
        *parents, last = path.split("/")
        node = t
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[int(last) if isinstance(node, list) else last] = value
    return mutate


FN = "Resources/Function/Properties"
BREAKAGES: dict[str, tuple[Callable[[dict], None], str]] = {
    "handler path": (_set(f"{FN}/Handler", "finai_serving.handler.main"), "Handler is"),
    "memory": (_set(f"{FN}/MemorySize", 512), "runtime/memory/timeout"),
    "code source": (_set(f"{FN}/Code", {"ZipFile": "def handler(e, c): pass"}), "code does not come"),
    "role action removed": (lambda t: _statement(t, "ReadWriteOptOuts")["Action"].remove("dynamodb:PutItem"),
                            "differ from least privilege"),
    "role action added": (lambda t: _statement(t, "ReadKillSwitch")["Action"].append("dynamodb:Scan"),
                          "differ from least privilege"),
    "wildcard action": (lambda t: _statement(t, "ReadKillSwitch")["Action"].append("dynamodb:*"),
                        "wildcard action 'dynamodb:*'"),
    "wildcard resource": (lambda t: _statement(t, "InvokeOneModel").update(Resource="*"), "wildcard resource"),
    "wildcard inside an ARN": (lambda t: _statement(t, "ReadKillSwitch").update(
        Resource={"Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:*:table/*"}), "wildcard resource"),
    "model in any Region, not pinned to the profile": (
        lambda t: _statement(t, "InvokeTheModelThroughTheProfile").pop("Condition"), "wildcard resource"),
    "granted table missing": (lambda t: t["Resources"].pop("ReasonCacheTable"),
                              "grants on ReasonCacheTable, which the template does not define"),
    "dynamodb grant on a non-table": (
        lambda t: _statement(t, "ReadKillSwitch").update(Resource={"Fn::GetAtt": ["LogGroup", "Arn"]}),
        "DynamoDB actions on LogGroup"),
    "env var unresolved": (_set(f"{FN}/Environment/Variables/FINAI_OPTOUT_TABLE", {"Ref": "OptOutTabel"}),
                           "FINAI_OPTOUT_TABLE refers to OptOutTabel"),
    "env var on the wrong table": (_set(f"{FN}/Environment/Variables/FINAI_OPTOUT_TABLE", {"Ref": "KillSwitchTable"}),
                                   "FINAI_OPTOUT_TABLE does not name the OptOutTable"),
    "env var missing": (lambda t: t["Resources"]["Function"]["Properties"]["Environment"]["Variables"].pop("FINAI_L2A"),
                        "environment lacks ['FINAI_L2A']"),
    "raw customer id key": (_set("Resources/OptOutTable/Properties/KeySchema/0/AttributeName", "customer_id"),
                            "OptOutTable key schema"),
    "provisioned table": (_set("Resources/KillSwitchTable/Properties/BillingMode", "PROVISIONED"),
                          "KillSwitchTable is not PAY_PER_REQUEST"),
    "no ttl": (lambda t: t["Resources"]["ReasonCacheTable"]["Properties"].pop("TimeToLiveSpecification"),
               "no TTL"),
    "public policy allowed": (
        _set("Resources/BundleBucket/Properties/PublicAccessBlockConfiguration/BlockPublicPolicy", False),
        "can be made public"),
    "public ACL": (_set("Resources/BundleBucket/Properties/AccessControl", "PublicRead"), "can be made public"),
    "unversioned": (lambda t: t["Resources"]["BundleBucket"]["Properties"].pop("VersioningConfiguration"),
                    "not versioned"),
    "bucket policy allows everyone": (
        lambda t: t["Resources"]["BundleBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"].append(
            {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::x/*"}),
        "a bucket policy allows everyone"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_a_broken_template_is_caught(breakage):
    mutate, expected = BREAKAGES[breakage]
    template = copy.deepcopy(load_template())
    mutate(template)
    problems = template_problems(template)
    assert any(expected in p for p in problems), problems


# --- deployed into moto on loopback -------------------------------------------------------------

@pytest.fixture
def aws(monkeypatch) -> Iterator[Callable[[str], Any]]:
    """Clients of a moto server on 127.0.0.1 (fake credentials, never real AWS), by service name."""
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield lambda service: boto3.client(service, endpoint_url=f"http://{host}:{port}", region_name=REGION)
    finally:
        server.stop()


def _deploy(cfn: Any, create: bool, **parameters: str) -> dict[str, str]:
    values = {"AuditKeySecretArn": SECRET_ARN, **parameters}
    params = [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]
    call = cfn.create_stack if create else cfn.update_stack
    call(StackName="finai", TemplateBody=TEMPLATE.read_text(), Parameters=params, Capabilities=["CAPABILITY_IAM"])
    stack = cfn.describe_stacks(StackName="finai")["Stacks"][0]
    assert stack["StackStatus"] == ("CREATE_COMPLETE" if create else "UPDATE_COMPLETE"), stack
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@pytest.mark.filterwarnings("ignore:Tried to parse AWS:UserWarning")
def test_moto_deploys_storage_first_then_the_function_from_the_uploaded_bundle(aws):
    cfn, ddb, s3, lam = aws("cloudformation"), aws("dynamodb"), aws("s3"), aws("lambda")

    # 1. No bundle key yet: storage, role and log group only (the bucket the code comes from is new).
    out = _deploy(cfn, True)
    assert "FunctionName" not in out
    listed = {r["LogicalResourceId"] for r in cfn.list_stack_resources(StackName="finai")["StackResourceSummaries"]}
    assert listed - {""} == {"BundleBucket", "KillSwitchTable", "OptOutTable", "ReasonCacheTable", "LogGroup",
                             "FunctionRole"}
    for output, table in [("KillSwitchTableName", "KillSwitchTable"), ("OptOutTableName", "OptOutTable"),
                          ("ReasonCacheTableName", "ReasonCacheTable")]:
        described = ddb.describe_table(TableName=out[output])["Table"]
        assert [(k["AttributeName"], k["KeyType"]) for k in described["KeySchema"]] == KEYS[table]
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    encryption = s3.get_bucket_encryption(Bucket=out["BundleBucketName"])["ServerSideEncryptionConfiguration"]
    assert encryption["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    groups = aws("logs").describe_log_groups(logGroupNamePrefix="/aws/lambda/finai-recommender-dev")["logGroups"]
    assert [g["retentionInDays"] for g in groups] == [30]
    role = out["FunctionRoleArn"].split("/")[-1]
    document = aws("iam").get_role_policy(RoleName=role, PolicyName="finai-serving")["PolicyDocument"]
    document = document if isinstance(document, dict) else ast.literal_eval(document)   # moto: a dict's repr
    resources = {s["Sid"]: s["Resource"] for s in document["Statement"]}
    assert resources["ReadKillSwitch"].endswith(f":table/{out['KillSwitchTableName']}")
    assert resources["ReadWriteOptOuts"].endswith(f":table/{out['OptOutTableName']}")
    assert resources["ReadWriteReasonCache"].endswith(f":table/{out['ReasonCacheTableName']}")
    assert resources["ReadBundles"] == f"arn:aws:s3:::{out['BundleBucketName']}/*"
    assert resources["ReadAuditKey"] == SECRET_ARN
    profile = f"arn:aws:bedrock:{REGION}:123456789012:inference-profile/global.anthropic.claude-haiku-4-5-20251001-v1:0"
    assert resources["InvokeOneModel"] == profile
    assert resources["InvokeTheModelThroughTheProfile"] == [
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0",
        "arn:aws:bedrock:::foundation-model/anthropic.claude-haiku-4-5-20251001-v1:0"]

    # 2. Upload the bundle and a runtime layer, deploy again with the key: the function appears.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("finai_serving/handler.py", "def handler(event, context):\n    return {}\n")
    bundle = buffer.getvalue()
    s3.put_object(Bucket=out["BundleBucketName"], Key="bundles/2024-05/bundle.zip", Body=bundle)
    layer = lam.publish_layer_version(LayerName="finai-runtime", Content={"ZipFile": bundle},
                                      CompatibleRuntimes=["python3.12"])["LayerVersionArn"]
    out = _deploy(cfn, False, BundleKey="bundles/2024-05/bundle.zip", RuntimeLayerArns=layer)
    function = lam.get_function(FunctionName=out["FunctionName"])
    config = function["Configuration"]
    assert (config["Handler"], config["Runtime"], config["MemorySize"], config["Timeout"]) == \
        (HANDLER, "python3.12", 1024, 10)
    assert config["CodeSize"] == len(bundle)       # the code is the uploaded object, byte for byte
    assert config["CodeSha256"] == base64.b64encode(hashlib.sha256(bundle).digest()).decode()
    assert [x["Arn"] for x in config["Layers"]] == [layer]
    assert config["Role"] == out["FunctionRoleArn"]
    env = config["Environment"]["Variables"]
    assert {env[k] for k in TABLE_ENV} == {out["KillSwitchTableName"], out["OptOutTableName"],
                                           out["ReasonCacheTableName"]}
    assert env["FINAI_OPTOUT_TABLE"] == out["OptOutTableName"] and env["FINAI_L2A"] == "off"
    assert env["FINAI_AUDIT_KEY_SECRET_ARN"] == SECRET_ARN
    assert function["Concurrency"]["ReservedConcurrentExecutions"] == 10
