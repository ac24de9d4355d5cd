"""Writing and reading a raw dataset folder so that nothing half-written looks complete.

Layout: ``<out>/<table>/<YYYY-MM>.parquet`` plus ``_manifest.json``. A run first drops an
``_incomplete.json`` marker, writes each file under a temporary name and renames it into place,
and writes the manifest last. A folder without a manifest is never read as a dataset.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from finai_models.artifacts import write_atomic, write_text_atomic
from finai_models.data.raw_schema import TABLES
from finai_models.errors import DataError

MANIFEST = "_manifest.json"
INCOMPLETE = "_incomplete.json"
FORMAT_VERSION = 1


def fingerprint(identity: dict[str, Any]) -> str:
    """A short stable hash of what defines a dataset (source, seed, size, config)."""
    blob = json.dumps(identity, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (raw months and bundles can be large)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def require_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a complete dataset, or a DataError saying how to produce one."""
    manifest = read_manifest(folder)
    if manifest is None:
        state = "is incomplete (an earlier run stopped)" if (Path(folder) / INCOMPLETE).exists() else "has none"
        raise DataError(f"raw dataset {folder} {state}: no {MANIFEST}; run `finai generate` "
                        "(or `finai santander`) to produce it")
    return manifest


@dataclass
class DatasetWriter:
    """Writes one dataset; ``open`` decides whether the folder may be used at all."""

    folder: Path
    identity: dict[str, Any]
    tables: dict[str, dict[str, int]] = field(default_factory=lambda: {t: {} for t in TABLES})

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.identity)

    def existing(self) -> dict[str, Any] | None:
        """The manifest if the folder already holds this very dataset, complete."""
        manifest = read_manifest(self.folder)
        if manifest is None:
            return None
        if manifest.get("fingerprint") != self.fingerprint:
            theirs = ", ".join(f"{k}={v}" for k, v in sorted(manifest.get("identity", {}).items())
                               if k != "config")
            raise DataError(f"output folder {self.folder} holds a different dataset ({theirs}); "
                            "choose another --out or pass --overwrite")
        return manifest

    def open(self, overwrite: bool = False) -> None:
        folder = self.folder
        if folder.exists() and any(folder.iterdir()):
            ours = (folder / MANIFEST).exists() or (folder / INCOMPLETE).exists()
            if not ours:
                raise DataError(f"output folder {folder} is not empty and holds no FinAI dataset; "
                                "choose an empty or new folder")
            if (folder / MANIFEST).exists() and not overwrite:
                self.existing()  # raises when it is another dataset
            for name in (*TABLES, MANIFEST):
                target = folder / name
                if target.is_dir():
                    shutil.rmtree(target)
                elif target.exists():
                    target.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / INCOMPLETE).write_text(json.dumps({"fingerprint": self.fingerprint}))

    def write(self, table_name: str, month: str, table: pa.Table) -> None:
        target = self.folder / table_name / f"{month}.parquet"
        write_atomic(target, lambda tmp: pq.write_table(table, tmp, compression="zstd", compression_level=1,
                                                        row_group_size=1 << 20))
        self.tables[table_name][month] = table.num_rows

    def close(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        months = sorted(self.tables["monthly_snapshots"])
        manifest = {
            "format_version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "identity": self.identity,
            "months": months,
            "rows": self.tables,
            **(extra or {}),
        }
        write_text_atomic(self.folder / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        (self.folder / INCOMPLETE).unlink(missing_ok=True)
        return manifest


def month_file(folder: Path, table: str, month: str) -> Path:
    """The Parquet file of one table and month: of the dataset as written, or of a month that arrived
    later (dropped into ``<folder>/<table>/<YYYY-MM>.parquet`` by the bank's extract)."""
    manifest = require_manifest(folder)
    path = Path(folder) / table / f"{month}.parquet"
    if month not in manifest["months"] and not path.is_file():
        raise DataError(f"raw dataset {folder} has no month {month} "
                        f"(it holds {manifest['months'][0]} .. {manifest['months'][-1]}, and no {path} arrived)")
    return path
