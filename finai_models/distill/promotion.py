"""Champion/challenger promotion of a month's students, every decision in the audit log.

The ladder, in order: any student failing the fidelity gate -> ``reject`` (a forced promotion
does not override the safety floor); no champion yet -> ``bootstrap``; ``force`` -> ``forced``;
otherwise each task's *held-out student metric* is compared with the champion's students scored
on the same challenger test rows (the original compared teacher metrics, on different rows),
and a challenger worse than the champion beyond the configured margin on any task is rejected.
The champion pointer (``CHAMPION.json``) changes only on a promotion, atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from finai_models.artifacts import write_text_atomic
from finai_models.distill.config import DistillConfig
from finai_models.distill.fidelity import Fidelity
from finai_models.distill.students import evaluate_student
from finai_serving.audit import AuditLog

METRIC = {"binary": "student_auc", "multiclass": "student_macro_f1", "regression": "student_mae"}


@dataclass
class Decision:
    action: str                       # promote | reject | bootstrap | forced
    month: str
    champion: str | None
    reasons: list[str] = field(default_factory=list)
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.action in ("promote", "bootstrap", "forced")


def _worse(kind: str, challenger: float, champion: float, margins: dict[str, float]) -> tuple[bool, str]:
    if kind == "binary":
        drop = champion - challenger
        return drop > margins["max_auc_drop"], f"AUC {challenger:.4f} vs champion {champion:.4f}"
    if kind == "multiclass":
        drop = champion - challenger
        return drop > margins["max_macro_f1_drop"], f"macro-F1 {challenger:.4f} vs champion {champion:.4f}"
    rise = (challenger - champion) / max(champion, 1e-12)
    return rise > margins["max_mae_increase"], f"MAE {challenger:.4f} vs champion {champion:.4f} ({rise:+.1%})"


def decide(cfg: DistillConfig, month: str, students_dir: Path, inputs_dir: Path, fidelity: dict[str, Fidelity],
           champion: dict[str, Any] | None, force: bool = False) -> Decision:
    failed = sorted(t for t, f in fidelity.items() if not f.passed)
    if failed:
        reasons = [f"{t}: fidelity gate failed: {'; '.join(fidelity[t].failures)}" for t in failed]
        return Decision("reject", month, champion and champion["month"],
                        reasons + (["force does not override the fidelity gate"] if force else []))
    if champion is None:
        return Decision("bootstrap", month, None, ["no champion yet"])
    if force:
        return Decision("forced", month, champion["month"], ["forced by the operator"])
    decision = Decision("promote", month, champion["month"])
    for task in cfg.tasks:
        mine = fidelity[task.name]
        theirs_dir = Path(champion["students_dir"]) / task.name
        if mine.route == "rule" or not (theirs_dir / "student.json").is_file():
            decision.per_task[task.name] = {"compared": False, "why": "rule-routed or no champion student"}
            continue
        theirs = evaluate_student(cfg, task.name, theirs_dir, inputs_dir)
        key = METRIC[task.kind]
        if key not in theirs.metrics:
            decision.per_task[task.name] = {"compared": False, "why": "; ".join(theirs.failures) or "rule-routed"}
            continue
        worse, text = _worse(task.kind, mine.metrics[key], theirs.metrics[key], cfg.promotion)
        decision.per_task[task.name] = {"compared": True, "worse": worse, "challenger": mine.metrics[key],
                                        "champion": theirs.metrics[key], "summary": text}
        if worse:
            decision.reasons.append(f"{task.name}: {text}")
    if decision.reasons:
        decision.action = "reject"
    else:
        decision.reasons.append("no task worse than the champion beyond the margins")
    return decision


class Registry:
    """``CHAMPION.json`` and the audit log of every promotion decision, under one folder."""

    def __init__(self, root: Path, key: bytes):
        self.root = Path(root)
        self.audit = AuditLog(self.root / "promotions.log", key)

    def champion(self) -> dict[str, Any] | None:
        path = self.root / "CHAMPION.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def record(self, decision: Decision, students_dir: Path, run_id: str | None,
               fidelity: dict[str, Fidelity]) -> dict[str, Any]:
        entry = self.audit.append("promotion", decision=decision.action, month=decision.month,
                                  champion_before=decision.champion, reasons=decision.reasons,
                                  per_task=decision.per_task, run_id=run_id, students_dir=str(students_dir),
                                  fidelity={t: {"passed": f.passed, "failures": f.failures}
                                            for t, f in fidelity.items()})
        if decision.promoted:
            pointer = {"month": decision.month, "students_dir": str(students_dir), "promoted_at": entry["time"],
                       "decision": decision.action, "audit_seq": entry["seq"]}
            write_text_atomic(self.root / "CHAMPION.json", json.dumps(pointer, indent=1))
        return entry
