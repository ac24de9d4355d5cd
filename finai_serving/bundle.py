"""The month's Lambda bundle: one zip that is the function's deployment package.

Layout (unzipped, it is the Lambda task root)::

    finai_serving/*.py                    the handler package (numpy + lightgbm at run time)
    model/trees.so, model/compiled.json   every student's trees compiled to C, and the library's layout
    model/manifest.json                   format, month, runtime packages, SHA-256 of every other file
    model/serving.json                    catalogue, constraints, fallback, reason templates, Safety Gate
    model/schema.json                     the training set's FeatureSchema (finai_serving.schema), MCC vocabulary added
    model/population.json                 percentile grids, popularity, label priors (monthly batch)
    model/customers.npz                   the batch customers' raw features and teacher gate weights
    model/gate_student.npz                gate weights for customers absent from the batch
    model/students/<task>/                student.json, model.txt and trees.npz (the dumped trees)

``build_bundle`` refuses a student whose fidelity did not pass, so a failing month never produces
a bundle, whichever run builds it; the handler re-checks every digest before it loads anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from finai_serving.model import FORMAT, MANIFEST

PACKAGE = Path(__file__).resolve().parent
RUNTIME = ["numpy", "lightgbm"]
BATCH_FILES = ("schema.json", "population.json", "customers.npz", "gate_student.npz")
MAX_ZIP_BYTES = 50 * 2**20
MAX_UNZIPPED_BYTES = 250 * 2**20


class BundleError(RuntimeError):
    """The bundle cannot be built (a failing or missing student, a missing batch file, too large)."""


def _packed(folder: Path) -> tuple[dict[str, np.ndarray], list[int]] | None:
    """The student's trees as packed arrays and the input columns it reads (None for a rule-routed task)."""
    meta = json.loads((folder / "student.json").read_text())
    if meta["route"] == "rule":
        return None
    import lightgbm as lgb

    from finai_serving.trees import pack_booster

    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    position = {c: i for i, c in enumerate(meta["columns"])}
    columns = [position[c] for c in meta.get("features", meta["columns"])]
    return pack_booster(booster.dump_model(num_iteration=meta["iterations"]), meta["iterations"]), columns


def _npz(arrays: Mapping[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _library(students: list[tuple[str, dict[str, np.ndarray], list[int]]], width: int) -> dict[str, bytes]:
    """``model/trees.so`` (every student's trees compiled to C) and ``model/compiled.json`` (its layout)."""
    from finai_serving.compiled import build_library, library_source

    source, layout = library_source(students)
    with tempfile.TemporaryDirectory(prefix="finai-trees-") as tmp:
        build_library(source, Path(tmp) / "trees.so")
        library = (Path(tmp) / "trees.so").read_bytes()
    layout_doc = {"layout": layout, "width": width, "platform": f"{platform.system()}-{platform.machine()}"}
    return {"model/trees.so": library, "model/compiled.json": json.dumps(layout_doc).encode()}


def build_bundle(students: Path, passed: Mapping[str, bool], batch: Path, config: Mapping[str, Any], out: Path,
                 info: Mapping[str, Any]) -> dict[str, Any]:
    """Zip the handler, every task's student (all must have passed) and the month's batch into ``out``."""
    failing = sorted(t for t, ok in passed.items() if not ok)
    if failing:
        raise BundleError(f"students {failing} failed the fidelity gate; no bundle for this month")
    content: dict[str, bytes] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        content[f"finai_serving/{path.relative_to(PACKAGE).as_posix()}"] = path.read_bytes()
    for name in BATCH_FILES:
        if not (Path(batch) / name).is_file():
            raise BundleError(f"the monthly serving batch has no {name} at {batch}; materialize serving/batch first")
        content[f"model/{name}"] = (Path(batch) / name).read_bytes()
    content["model/serving.json"] = json.dumps(config, ensure_ascii=False, sort_keys=True).encode()
    packed, width = [], 0
    for task in passed:
        folder = Path(students) / task
        if not (folder / "student.json").is_file():
            raise BundleError(f"no student for task {task!r} at {folder}")
        for f in sorted(folder.iterdir()):
            content[f"model/students/{task}/{f.name}"] = f.read_bytes()
        trees = _packed(folder)
        if trees is not None:
            content[f"model/students/{task}/trees.npz"] = _npz(trees[0])
            packed.append((task, *trees))
            width = len(json.loads((folder / "student.json").read_text())["columns"])
    if config.get("scorer") == "compiled" and packed:
        try:
            content.update(_library(packed, width))
        except RuntimeError as exc:
            raise BundleError(str(exc)) from None
    unzipped = sum(len(b) for b in content.values())
    if unzipped > MAX_UNZIPPED_BYTES:
        raise BundleError(f"the bundle would unzip to {unzipped / 2**20:.0f} MB, over Lambda's 250 MB")
    manifest = {"format": FORMAT, **info, "runtime": {"python": "3.12", "packages": RUNTIME},
                "files": {name: hashlib.sha256(data).hexdigest() for name, data in content.items()}}
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in content.items():
            z.writestr(name, data)
        z.writestr(MANIFEST, json.dumps(manifest, indent=1))
    if tmp.stat().st_size > MAX_ZIP_BYTES:
        tmp.unlink()
        raise BundleError("the zipped bundle exceeds Lambda's 50 MB; lower batch.max_customers in serving.yaml")
    os.replace(tmp, out)
    return {**manifest, "zip_bytes": out.stat().st_size, "unzipped_bytes": unzipped}
