"""Sections 1-6 of the card: summary, intended use, model, per-task performance, gates, fidelity.

Every builder writes an explicit sentence when its facts are empty (and says why), because a
blank heading in a governance document reads as "not checked" rather than "nothing to report".
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from finai_models.governance import plots
from finai_models.governance.common import (
    LOWER_IS_BETTER,
    Plot,
    Section,
    blocks,
    bullets,
    fairness_status,
    fairness_verdict,
    fidelity_summary,
    gate_sentence,
    is_num,
    listing,
    num,
    primary_gap,
    table,
    verdict,
)

DEFAULT_USE = {
    "purpose": ("Rank a retail bank's products for each existing customer once a month and explain every "
                "recommendation, to support (not replace) advisers and digital channels in offering suitable "
                "products."),
    "users": ("The bank's relationship managers and digital-channel teams (who act on the recommendations), the "
              "ML team and operators (who run and monitor the model), and model-risk, compliance and regulators "
              "(who review this card). Customers see recommendations with their reasons and may opt out."),
    "out_of_scope": ("Credit, pricing or eligibility decisions, any fully automated decision with legal or similarly "
                     "significant effect on a customer, prospects who are not yet customers, and populations or "
                     "markets outside the training data."),
}


def _checks_line(facts: Mapping[str, Any]) -> str:
    checks = facts["checks"] or []
    if not checks:
        return "none recorded"
    passed = sum(1 for c in checks if c.get("passed"))
    return f"{'pass' if passed == len(checks) else 'FAIL'} ({passed}/{len(checks)} passed)"


def summary(facts: Mapping[str, Any]) -> Section:
    model, drift = facts["model"] or {}, facts["drift"] or {}
    passed, judged, failing = fidelity_summary(facts)
    fidelity = (f"{'pass' if not failing else 'FAIL'} ({passed}/{judged} tasks pass"
                + (f"; failing: {', '.join(failing)})" if failing else ")")) if judged else "n/a (no record)"
    retrain = drift.get("retrain_requested")
    fidelity_words = (f"{passed} of {judged} tasks pass teacher–student fidelity" if judged
                      else "no teacher–student fidelity record exists")
    headline = (f"Drift is **{drift.get('status') or 'n/a'}**, fairness is **{fairness_status(facts)}**, "
                f"{fidelity_words}, and a retrain is **{'requested' if retrain else 'not requested'}**.")
    rows = [
        ("month", facts["month"]), ("champion", model.get("champion_month")),
        ("promotion decision", f"{model.get('decision') or 'n/a'} (audit seq {num(model.get('audit_seq'))}, "
                               f"promoted {model.get('promoted_at') or 'n/a'})"),
        ("drift (overall)", drift.get("status") or "n/a"),
        ("feature drift", drift.get("feature_status") or "n/a"),
        ("prediction drift", drift.get("prediction_status") or "n/a"),
        ("fairness", fairness_verdict(facts)), ("teacher-student fidelity", fidelity),
        ("retrain requested", num(bool(retrain))), ("asset checks", _checks_line(facts)),
    ]
    body = blocks(f"Model card of **{facts['system']}** for **{facts['month']}**, generated {facts['generated_at']}.",
                  headline, table(("item", "value"), rows))
    return Section("summary", "Summary", body)


def intended_use(facts: Mapping[str, Any]) -> Section:
    given = facts["intended_use"] or {}
    defaulted = [k for k in DEFAULT_USE if not given.get(k)]
    lines = [f"**{label}.** {given.get(key) or DEFAULT_USE[key]}"
             for key, label in (("purpose", "Purpose"), ("users", "Users"), ("out_of_scope", "Out of scope"))]
    note = (f"Default statement used for {', '.join(defaulted)}: the pipeline configuration gave none." if defaulted
            else "")
    return Section("intended-use", "Intended use and users", blocks(*lines, note))


def model_and_training(facts: Mapping[str, Any]) -> Section:
    model = facts["model"] or {}
    teacher, students = model.get("teacher") or {}, model.get("students") or {}
    experts = teacher.get("experts") or []
    teacher_line = (f"Teacher: **{teacher.get('architecture') or 'n/a'}** with {len(experts)} experts "
                    f"({listing(experts, 'none recorded')}), trained {num(teacher.get('epochs'))} epochs, "
                    f"{num(teacher.get('parameters'))} parameters; run directory `{teacher.get('run_dir') or 'n/a'}`.")
    reasons = model.get("reasons") or []
    decision = (f"Promotion decision **{model.get('decision') or 'n/a'}** for champion "
                f"**{model.get('champion_month') or 'n/a'}** (audit seq {num(model.get('audit_seq'))}, "
                f"promoted {model.get('promoted_at') or 'n/a'}). "
                + ("Reasons:" if reasons else "No reason was recorded with the decision."))
    routes = students.get("routes") or {}
    by_route = {r: [t for t, x in routes.items() if x == r] for r in dict.fromkeys(routes.values())}
    student_part = (blocks(f"Students (directory `{students.get('dir') or 'n/a'}`): DISTILL students imitate the "
                           "teacher, DIRECT students learn the labels, RULE tasks are served by the rule engine.",
                           bullets(f"**{r}** ({len(t)}): {', '.join(t)}" for r, t in by_route.items()))
                    if routes else "No student routes were recorded: no student was trained for this champion.")
    versions = model.get("code_versions") or {}
    version_part = (table(("component", "code version"), versions.items()) if versions
                    else "No code versions were recorded with this champion.")
    body = blocks(teacher_line, decision, bullets(reasons), student_part, "Code versions:", version_part)
    return Section("model", "Model and training", body)


def _beats(task: Mapping[str, Any]) -> str:
    student, base = task.get("student"), task.get("baseline")
    if not (is_num(student) and is_num(base)):
        return "n/a"
    better = student < base if task.get("metric") in LOWER_IS_BETTER else student > base
    return "better" if better else "not better"


def performance(facts: Mapping[str, Any]) -> Section:
    tasks = facts["tasks"] or []
    if not tasks:
        return Section("performance", "Per-task performance",
                       "No task metrics were recorded for this month: the evaluation of the champion did not run "
                       "or produced no result, so no performance claim is made.")
    rows = [(t.get("name"), t.get("type"), t.get("metric"), t.get("teacher"), t.get("student"), t.get("baseline"),
             _beats(t), t.get("route") or "n/a") for t in tasks]
    compared = [r for r in rows if r[6] != "n/a"]
    wins = sum(1 for r in compared if r[6] == "better")
    missing: dict[tuple[str, str], list[str]] = {}   # (absent values, why) -> tasks
    for t in tasks:
        absent = [k for k in ("teacher", "student", "baseline") if not is_num(t.get(k))]
        if absent:
            why = ("rule-routed, no student model" if t.get("route") == "rule" and absent == ["student"]
                   else "no value in the month's evaluation")
            missing.setdefault((", ".join(absent), why), []).append(str(t.get("name")))
    gaps = "; ".join(f"{what} not measured for {', '.join(names)} ({why})" for (what, why), names in missing.items())
    body = blocks(
        "One metric per task from the champion's evaluation (AUC and macro-F1: higher is better; MAE: lower is "
        "better).",
        f"The student beats the baseline on {wins} of {len(compared)} tasks where both were measured." if compared
        else "No task has both a student and a baseline value, so no comparison with the baseline is made.",
        table(("task", "type", "metric", "teacher", "student", "baseline", "student vs baseline", "route"), rows),
        f"Not available: {gaps}." if missing else "Every task has all three values.")
    if not any(is_num(t.get(k)) for t in tasks for k in ("teacher", "student", "baseline")):
        return Section("performance", "Per-task performance", blocks(body, "No value to plot."))
    plot = Plot("performance", "Teacher, student and baseline per task, grouped by metric",
                partial(plots.performance_plot, tasks))
    return Section("performance", "Per-task performance", body, [plot])


def gate_weights(facts: Mapping[str, Any]) -> Section:
    weights = facts["gate_weights"] or {}
    if not any(is_num(w) for row in weights.values() for w in (row or {}).values()):
        return Section("gate-weights", "Gate weights per task",
                       "Not available: no gate weights were recorded for this month (the teacher's gates were not "
                       "evaluated on the month's customers), so expert usage cannot be reported.")
    experts = list(dict.fromkeys(e for row in weights.values() for e in (row or {})))
    rows = [(task, *((row or {}).get(e) for e in experts)) for task, row in weights.items()]
    body = blocks("Mean layer-0 gate weight of each expert per task over the month's customers: how much each "
                  "task's tower relies on each expert.", gate_sentence(weights), table(("task", *experts), rows))
    plot = Plot("gate_weights", "Mean gate weight, task × expert", partial(plots.gate_heatmap, weights))
    return Section("gate-weights", "Gate weights per task", body, [plot])


def fidelity(facts: Mapping[str, Any]) -> Section:
    records = facts["fidelity"] or {}
    if not records:
        return Section("fidelity", "Teacher–student fidelity",
                       "Not available: no fidelity record exists for this month (no student was evaluated against "
                       "the teacher), so the students' imitation of the teacher is unverified.")
    routes = ((facts["model"] or {}).get("students") or {}).get("routes") or {}
    passed, judged, failing = fidelity_summary(facts)
    rows, gaps = [], {}
    for task, rec in records.items():
        rec = rec or {}
        metrics = rec.get("metrics") or {}
        gap_name, gap = primary_gap(metrics)
        gaps[task] = (gap_name, gap, bool(rec.get("passed")))
        similarity = metrics.get("rank_corr", metrics.get("agreement"))
        rows.append((task, rec.get("route") or routes.get(task) or "n/a", verdict(rec.get("passed")), gap_name,
                     num(gap, 4), similarity, listing(rec.get("failures") or [], "")))
    body = blocks(
        f"{passed} of {judged} tasks pass the blocking tier-1 fidelity gate"
        + (f"; failing: {', '.join(failing)}." if failing else "."),
        "The gap is teacher minus student (AUC, macro-F1) or the student's relative excess error (MAE); the "
        "similarity column is the rank correlation (or agreement) between teacher and student scores. "
        "Rule-routed tasks have no student and show n/a.",
        table(("task", "route", "result", "gap", "value", "rank corr / agreement", "failures"), rows))
    if not any(gap is not None for _, gap, _ in gaps.values()):
        return Section("fidelity", "Teacher–student fidelity", blocks(body, "No gap value to plot."))
    plot = Plot("fidelity", "Tier-1 fidelity gap per task", partial(plots.fidelity_plot, gaps))
    return Section("fidelity", "Teacher–student fidelity", body, [plot])

