"""Resources keyed by environment ($FINAI_ENV, default ``local``); asset code never branches on it."""


import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from finai_assets.defs.pipes import WholeLineFileMessageReader
from finai_assets.settings import settings
from finai_models.config import Settings, load_settings


class FinAIConfig(dg.ConfigurableResource):
    """Where the configs and the work directory are; empty fields fall back to the environment."""

    config_dir: str = ""
    dataset: str = ""
    workdir: str = ""

    def load(self) -> Settings:
        return load_settings(self.config_dir or None, self.dataset or None, self.workdir or None)

    def env(self) -> dict[str, str]:
        """The same settings for a subprocess (the training service reads the environment)."""
        s = self.load()
        return {**os.environ, "FINAI_CONFIG_DIR": str(s.config_dir), "FINAI_WORKDIR": str(s.workdir),
                "FINAI_DATASET": self.dataset or os.environ.get("FINAI_DATASET") or s.pipeline["dataset"]}


class BundleStore(dg.ConfigurableResource):
    """Where a built bundle is published: kept in the artifacts folder (``local``) or uploaded to an S3
    bucket through dagster-aws (``s3``; ``endpoint_url`` points at a local moto server in tests)."""

    kind: str = "local"
    bucket: str = ""
    prefix: str = "bundles"
    endpoint_url: str = ""
    region_name: str = "ap-northeast-2"

    def publish(self, path: Path, month: str) -> str:
        if self.kind == "local":
            return str(path)
        if self.kind != "s3" or not self.bucket:
            raise ValueError(f"bundle store {self.kind!r}: expected 'local', or 's3' with a bucket")
        from dagster_aws.s3 import S3Resource

        client = S3Resource(endpoint_url=self.endpoint_url or None, region_name=self.region_name).get_client()
        key = f"{self.prefix}/{month}/{path.name}"
        client.upload_file(str(path), self.bucket, key, ExtraArgs={"Metadata": {"month": month}})
        return f"s3://{self.bucket}/{key}"


def bundle_store() -> BundleStore:
    """``$FINAI_BUNDLE_STORE``: ``local`` (default) or ``s3`` with ``$FINAI_BUNDLE_BUCKET`` (and
    ``$FINAI_S3_ENDPOINT`` for a local moto server)."""
    return BundleStore(kind=os.environ.get("FINAI_BUNDLE_STORE", "local"),
                       bucket=os.environ.get("FINAI_BUNDLE_BUCKET", ""),
                       endpoint_url=os.environ.get("FINAI_S3_ENDPOINT", ""))


def pipes_client() -> dg.PipesSubprocessClient:
    """The training service's launcher: a local subprocess, its messages read whole (``defs.pipes``)."""
    return dg.PipesSubprocessClient(message_reader=WholeLineFileMessageReader())


def _local() -> dict:
    s = settings()
    wh = s.pipeline["warehouse"]
    s.workdir.mkdir(parents=True, exist_ok=True)
    return {
        "finai": FinAIConfig(),
        "pipes_subprocess_client": pipes_client(),
        "bundle_store": bundle_store(),
        "warehouse": DuckDBResource(
            database=str(s.path("warehouse")),
            connection_config={"memory_limit": wh["memory_limit"], "threads": wh["threads"]},
        ),
    }


RESOURCES_BY_ENV = {"local": _local}


@dg.definitions
def resources() -> dg.Definitions:
    env = os.environ.get("FINAI_ENV", "local")
    if env not in RESOURCES_BY_ENV:
        raise ValueError(f"FINAI_ENV={env!r} is not one of {sorted(RESOURCES_BY_ENV)}")
    return dg.Definitions(resources=RESOURCES_BY_ENV[env]())
