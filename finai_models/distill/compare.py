"""Student vs teacher vs hard-label LightGBM on the test months, per task and for the whole month."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from finai_models.distill.fidelity import Fidelity
from finai_models.teacher.tasks import TaskSpec

PRIMARY = {"binary": ("auc", "AUC"), "multiclass": ("macro_f1", "macro-F1"), "regression": ("mae", "MAE")}


def row_values(task: TaskSpec, fid: Fidelity, lightgbm: Mapping[str, Any] | None) -> dict[str, Any]:
    key, label = PRIMARY[task.kind]
    base = (lightgbm or {}).get("test", {}).get("tasks", {}).get(task.name, {}).get(key)
    return {"task": task.name, "route": fid.route, "metric": label, "student": fid.metrics.get(f"student_{key}"),
            "teacher": fid.metrics.get(f"teacher_{key}"), "lightgbm": base, "passed": fid.passed,
            "ece": fid.metrics.get("student_ece")}


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def comparison_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| task | route | metric | student | teacher | LightGBM (hard labels) | student ECE | fidelity |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r['route'].upper()} | {r['metric']} | {_fmt(r['student'])} | "
                     f"{_fmt(r['teacher'])} | {_fmt(r['lightgbm'])} | {_fmt(r['ece'])} | "
                     f"{'pass' if r['passed'] else 'FAIL'} |")
    return "\n".join(lines)


def comparison_row(task: TaskSpec, fid: Fidelity, lightgbm: Mapping[str, Any] | None) -> str:
    return comparison_table([row_values(task, fid, lightgbm)])
