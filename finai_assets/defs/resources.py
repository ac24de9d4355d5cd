"""Resources keyed by environment ($FINAI_ENV, default ``local``); asset code never branches on it."""


import hashlib
import os
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from finai_assets.defs.pipes import WholeLineFileMessageReader
from finai_assets.settings import settings
from finai_models.artifacts import ArtifactPaths
from finai_models.config import Settings, load_settings
from finai_models.data.raw_schema import TABLES


class FinAIConfig(dg.ConfigurableResource):
    """Where the configs and the work directory are; empty fields fall back to the environment."""

    config_dir: str = ""
    dataset: str = ""
    workdir: str = ""

    def load(self) -> Settings:
        return load_settings(self.config_dir or None, self.dataset or None, self.workdir or None)

    def paths(self) -> ArtifactPaths:
        """Where every artifact of these settings lives (the one owner of path formulas)."""
        return ArtifactPaths.of(self.load())

    def env(self) -> dict[str, str]:
        """The same settings for a subprocess (the training service reads the environment)."""
        s = self.load()
        return {**os.environ, "FINAI_CONFIG_DIR": str(s.config_dir), "FINAI_WORKDIR": str(s.workdir),
                "FINAI_DATASET": self.dataset or os.environ.get("FINAI_DATASET") or s.pipeline.dataset}


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


class RawSource(dg.ConfigurableResource):
    """Where the bank's monthly extract lands: the dataset's raw folder (``local``), or an S3 prefix
    (``s3``: ``<prefix>/<table>/<YYYY-MM>.parquet``, copied into the raw folder before it is loaded).

    A month counts once every table has its file; its signature changes when any file is replaced,
    so a corrected extract is picked up again."""

    kind: str = "local"
    bucket: str = ""
    prefix: str = "raw"
    endpoint_url: str = ""
    region_name: str = "ap-northeast-2"

    def _client(self):
        from dagster_aws.s3 import S3Resource

        if not self.bucket:
            raise ValueError("raw source 's3' needs a bucket ($FINAI_RAW_BUCKET)")
        return S3Resource(endpoint_url=self.endpoint_url or None, region_name=self.region_name).get_client()

    def _files(self, raw_dir: Path) -> dict[tuple[str, str], str]:
        if self.kind == "local":
            return {(t, f.stem): f"{f.stat().st_size}:{f.stat().st_mtime_ns}"
                    for t in TABLES for f in (Path(raw_dir) / t).glob("????-??.parquet")}
        if self.kind != "s3":
            raise ValueError(f"raw source {self.kind!r}: expected 'local' or 's3'")
        out = {}
        for page in self._client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                             Prefix=f"{self.prefix}/"):
            for obj in page.get("Contents", []):
                parts = obj["Key"][len(self.prefix) + 1:].split("/")
                if len(parts) == 2 and parts[0] in TABLES and parts[1].endswith(".parquet"):
                    out[(parts[0], parts[1].removesuffix(".parquet"))] = obj["ETag"].strip('"')
        return out

    def months(self, raw_dir: Path) -> dict[str, str]:
        """Every complete month and its signature (a digest of its files' sizes and times, or ETags)."""
        files = self._files(raw_dir)
        complete = sorted({m for _, m in files if all((t, m) in files for t in TABLES)})
        return {m: hashlib.sha256("|".join(files[(t, m)] for t in TABLES).encode()).hexdigest()[:16]
                for m in complete}

    def fetch(self, raw_dir: Path, table: str, month: str) -> None:
        """Make the month's file of ``table`` local; S3: download it (atomically) when absent or changed."""
        if self.kind == "local":
            return
        client, key = self._client(), f"{self.prefix}/{table}/{month}.parquet"
        target = Path(raw_dir) / table / f"{month}.parquet"
        etag = client.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')
        stamp = target.with_suffix(".etag")
        if target.is_file() and stamp.is_file() and stamp.read_text() == etag:
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".parquet.tmp")
        client.download_file(self.bucket, key, str(tmp))
        os.replace(tmp, target)
        stamp.write_text(etag)


def raw_source() -> RawSource:
    """``$FINAI_RAW_SOURCE``: ``local`` (default) or ``s3`` with ``$FINAI_RAW_BUCKET``, ``$FINAI_RAW_PREFIX``
    (default ``raw``) and ``$FINAI_S3_ENDPOINT``."""
    return RawSource(kind=os.environ.get("FINAI_RAW_SOURCE", "local"), bucket=os.environ.get("FINAI_RAW_BUCKET", ""),
                     prefix=os.environ.get("FINAI_RAW_PREFIX", "raw"),
                     endpoint_url=os.environ.get("FINAI_S3_ENDPOINT", ""))


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
    wh = s.pipeline.warehouse
    s.workdir.mkdir(parents=True, exist_ok=True)
    return {
        "finai": FinAIConfig(),
        "pipes_subprocess_client": pipes_client(),
        "bundle_store": bundle_store(),
        "raw_source": raw_source(),
        "warehouse": DuckDBResource(
            database=str(s.path("warehouse")),
            connection_config={"memory_limit": wh.memory_limit, "threads": wh.threads},
        ),
    }


RESOURCES_BY_ENV = {"local": _local}


@dg.definitions
def resources() -> dg.Definitions:
    env = os.environ.get("FINAI_ENV", "local")
    if env not in RESOURCES_BY_ENV:
        raise ValueError(f"FINAI_ENV={env!r} is not one of {sorted(RESOURCES_BY_ENV)}")
    return dg.Definitions(resources=RESOURCES_BY_ENV[env]())
