"""Where every artifact of the pipeline lives, and the pointers that name the current version.

One owner for every path formula: the Dagster assets and checks, the training service,
``finai-pipeline``, the benchmarks and the tests ask ``ArtifactPaths`` where a teacher run, a
student, a bundle or a report is, so a folder renamed here moves everywhere at once.

A versioned artifact (the Phase-0 state, a training set, a teacher run, the student inputs) is a
folder per version beside a ``CURRENT`` pointer file naming the finished one. The pointer is the
last thing written, and written atomically (temp file, fsync, rename in the same folder), so a
process killed at any moment leaves readers on the previous version, never on a half-written one.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from finai_models.errors import FinAIError

POINTER = "CURRENT"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` fills a temp file beside ``path``, which then replaces ``path`` in one rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with tmp.open("rb") as f:      # the bytes reach the disk before the rename makes them visible
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))


def set_current(root: Path, version: str) -> None:
    """Point ``root``'s ``CURRENT`` at its sub-folder ``version`` (which must be complete by now)."""
    if not (Path(root) / version).is_dir():
        raise FinAIError(f"cannot point {root}/{POINTER} at {version}: no such folder")
    write_text_atomic(Path(root) / POINTER, version)


def current_version(root: Path) -> str | None:
    """The version ``root``'s ``CURRENT`` names, or None before the first finished write."""
    pointer = Path(root) / POINTER
    return pointer.read_text().strip() if pointer.is_file() else None


def current(root: Path, what: str = "version", todo: str = "materialize it first") -> Path:
    """The folder ``root``'s ``CURRENT`` names; with none, an error naming ``what`` is missing and the ``todo``."""
    version = current_version(root)
    if version is None:
        raise FinAIError(f"no finished {what} under {root}; {todo}")
    return Path(root) / version


@dataclass(frozen=True)
class ArtifactPaths:
    """Every artifact's place under the work directory's artifacts root (``pipeline.yaml: paths.artifacts``)."""

    root: Path
    workdir: Path

    @classmethod
    def of(cls, settings) -> ArtifactPaths:     # Settings, untyped to keep this module free of config imports
        return cls(settings.path("artifacts"), settings.workdir)

    def audit_key(self) -> Path:
        """The HMAC key of the promotion audit log: outside the artifacts, which get shared and published."""
        return self.workdir / "secrets" / "audit.key"

    # Phase 0
    def phase0_state(self) -> Path:
        """Fitted Phase-0 states, one folder per version, and ``CURRENT``."""
        return self.root / "phase0" / "state"

    def month_inputs(self, month: str) -> Path:
        return self.root / "phase0" / "inputs" / f"{month}.npz"

    def feature_group(self, group: str, month: str) -> Path:
        return self.root / "phase0" / "features" / group / f"{month}.parquet"

    def training_sets(self) -> Path:
        """Training sets, one folder per version, and ``CURRENT``."""
        return self.root / "training_set"

    def current_training_set(self) -> Path:
        return current(self.training_sets(), "training set", "materialize training/training_set first")

    # Teacher
    def teacher_runs(self, month: str, architecture: str) -> Path:
        """The runs of one architecture (``ple``, ``lightgbm``, ``ablation/<variant>``...) trained at ``month``,
        one folder per configuration, and ``CURRENT``."""
        return self.root / "teacher" / "runs" / month / architecture

    def teacher_run(self, month: str, architecture: str) -> Path:
        return current(self.teacher_runs(month, architecture), "training run",
                       f"train {architecture} for {month} first (job teacher)")

    def lightgbm_run(self, month: str) -> Path:
        """The per-task LightGBM bar of ``month``: one folder, rebuilt in place (``metrics.json`` written last)."""
        return self.teacher_runs(month, "lightgbm")

    def comparison(self, month: str) -> Path:
        return self.root / "teacher" / "comparison" / month

    def ablation(self, month: str) -> Path:
        return self.root / "teacher" / "ablation" / month

    # Distillation
    def student_inputs_root(self, month: str) -> Path:
        """The month's shared student inputs, one folder per version, and ``CURRENT``."""
        return self.root / "distill" / month / "inputs"

    def student_inputs(self, month: str) -> Path:
        return current(self.student_inputs_root(month), "student inputs",
                       f"materialize distill/soft_labels for {month} first")

    def students(self, month: str) -> Path:
        return self.root / "distill" / month / "students"

    def registry(self) -> Path:
        """The champion pointer and the signed promotion audit log."""
        return self.root / "distill" / "registry"

    # Serving
    def serving_batch(self, month: str) -> Path:
        return self.root / "serving" / month / "batch"

    def batch_champion(self, month: str) -> Path:
        """Which champion the month's batch was built with (the bundle refuses any other)."""
        return self.root / "serving" / month / "champion.json"

    def bundle(self, month: str) -> Path:
        return self.root / "bundles" / f"finai-{month}.zip"

    def serving_state(self, month: str) -> Path:
        """The audit log, opt-outs and key of the handler ``finai-pipeline``'s last stage asks."""
        return self.root / "serving" / month / "serving_state"

    def bundle_check_state(self, month: str) -> Path:
        """The audit log, opt-outs and key of the handler the ``bundle_answers`` check runs."""
        return self.root / "serving" / month / "check_state"

    # Monitoring and governance
    def monitoring(self, month: str) -> Path:
        return self.root / "monitoring" / month

    def recommendations(self, month: str) -> Path:
        return self.monitoring(month) / "recommendations.parquet"

    def fairness_report(self, month: str) -> Path:
        return self.monitoring(month) / "fairness.json"

    def drift_report(self, month: str) -> Path:
        return self.monitoring(month) / "drift.json"

    def drift_reports(self) -> dict[str, Path]:
        """Every month's drift report, by month."""
        return {p.parent.name: p for p in sorted((self.root / "monitoring").glob("*/drift.json"))}

    def model_card(self, month: str) -> Path:
        return self.root / "governance" / month
