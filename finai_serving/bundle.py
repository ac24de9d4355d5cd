"""The month's Lambda bundle: one zip of the students with a manifest of SHA-256 digests.

Step 4 packs the students (model, ``student.json`` with its calibrator and columns); the handler,
catalogue and templates join it with the serving step. ``build_bundle`` refuses a student whose
fidelity did not pass, so a failing month never produces a bundle, whichever run builds it.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from finai_serving.student import sha256_file


class BundleError(RuntimeError):
    """The bundle cannot be built (a failing or missing student)."""


def build_bundle(students: Path, passed: Mapping[str, bool], out: Path, info: Mapping[str, Any]) -> dict[str, Any]:
    """Zip ``students/<task>/*`` for every task in ``passed`` (all must be True) into ``out``."""
    failing = sorted(t for t, ok in passed.items() if not ok)
    if failing:
        raise BundleError(f"students {failing} failed the fidelity gate; no bundle for this month")
    files: dict[str, str] = {}
    for task in passed:
        folder = Path(students) / task
        if not (folder / "student.json").is_file():
            raise BundleError(f"no student for task {task!r} at {folder}")
        for f in sorted(folder.iterdir()):
            files[f"students/{task}/{f.name}"] = str(f)
    manifest = {"format": 1, **info, "files": {name: sha256_file(Path(p)) for name, p in files.items()}}
    tmp = out.with_name(out.name + ".tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for name, path in files.items():
            z.write(path, name)
        z.writestr("manifest.json", json.dumps(manifest, indent=1))
    os.replace(tmp, out)
    return manifest
