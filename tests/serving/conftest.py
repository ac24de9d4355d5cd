"""Serving fixtures: the reasons config and engine, and a fake-AWS env.

The moto server (``moto_endpoint``, in tests/conftest.py) binds 127.0.0.1 on a free port; every
client built against it names the fake "testing" credentials itself. ``aws_env`` also replaces the
process's AWS settings with fake ones (and empty config files, and no instance metadata) for the
tests that use it, so nothing can reach real AWS with real credentials.
"""

from __future__ import annotations

import copy
import os
import uuid
from pathlib import Path

import boto3
import pytest
import yaml

from finai_models.config import REPO_ROOT
from finai_serving.reasons import ReasonEngine

REGION = "us-east-1"


@pytest.fixture(scope="session")
def reasons_config_session() -> dict:
    return yaml.safe_load((REPO_ROOT / "configs" / "reasons.yaml").read_text())


@pytest.fixture
def reasons_config(reasons_config_session: dict) -> dict:
    """A private copy: tests may edit it."""
    return copy.deepcopy(reasons_config_session)


@pytest.fixture(scope="session")
def engine(reasons_config_session: dict) -> ReasonEngine:
    return ReasonEngine(reasons_config_session)


def clear_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS_* settings, empty shared credential/config files, no instance-metadata lookups."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
        empty = tmp_path / name.lower()
        empty.write_text("")
        monkeypatch.setenv(name, str(empty))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clear_aws_env(monkeypatch, tmp_path)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)


def fake_client(service: str, endpoint: str | None = None):
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing", aws_session_token="testing")


@pytest.fixture
def cache_table(moto_endpoint: str, aws_env: None):
    """(DynamoDB client on the moto server, name of a fresh reason-cache table)."""
    client = fake_client("dynamodb", moto_endpoint)
    name = f"reasons-{uuid.uuid4().hex[:8]}"
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                              {"AttributeName": "sk", "AttributeType": "S"}],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    client.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "ttl"})
    yield client, name
    client.delete_table(TableName=name)
