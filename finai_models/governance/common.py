"""Section and plot records, Markdown helpers and the few numbers derived from the facts.

Several sections quote the same derived numbers (fidelity passes, fairness violations, the
dominant expert of each task); computing them once here keeps the summary, the detailed sections
and the regulatory mappings from disagreeing with each other.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LOWER_IS_BETTER = frozenset({"mae", "rmse", "ece", "log_loss"})
GAP_KEYS = ("auc_gap", "macro_f1_gap", "mae_gap", "rmse_gap")


@dataclass(frozen=True)
class Plot:
    """A figure of a section: ``draw(path)`` writes the PNG, so building sections stays cheap and pure."""

    name: str
    caption: str
    draw: Callable[[Path], Path]


@dataclass
class Section:
    """One heading of the card; ``id`` is the stable anchor that links and the completeness check use."""

    id: str
    title: str
    body: str
    plots: list[Plot] = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)


def num(value: Any, digits: int = 3) -> str:
    """A number for people: ``n/a`` for missing or non-finite values, never ``None`` or ``nan``."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if math.isfinite(value) else "n/a"
    return "n/a" if value is None else str(value)


def is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def interval(pair: Any) -> str:
    if isinstance(pair, Sequence) and len(pair) == 2 and all(is_num(v) for v in pair):
        return f"[{pair[0]:.2f}, {pair[1]:.2f}]"
    return "n/a"


def verdict(passed: Any) -> str:
    """Status word that the HTML renderer colours: ``pass`` / ``FAIL`` / ``n/a``."""
    return "n/a" if passed is None else ("pass" if passed else "FAIL")


def short_hash(value: Any, n: int = 12) -> str:
    return f"`{str(value)[:n]}`" if value else "n/a"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown pipe table; cells are stringified with ``num`` and ``|`` is escaped."""
    def cell(v: Any) -> str:
        return (v if isinstance(v, str) else num(v)).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items)


def blocks(*parts: str) -> str:
    """Paragraphs, tables and lists joined by blank lines; empty parts are dropped."""
    return "\n\n".join(p.strip() for p in parts if p and p.strip())


def listing(items: Iterable[Any], empty: str = "none") -> str:
    items = [str(i) for i in items]
    return ", ".join(items) if items else empty


def primary_gap(metrics: Mapping[str, Any]) -> tuple[str, float | None]:
    """The tier-1 gap of a fidelity record (AUC, macro-F1 or relative MAE), whichever the task has."""
    for key in GAP_KEYS:
        if key in metrics:
            return key, metrics[key] if is_num(metrics[key]) else None
    return "n/a", None


def fidelity_summary(facts: Mapping[str, Any]) -> tuple[int, int, list[str]]:
    """(passed, judged, failing tasks) over the month's fidelity records."""
    records = facts["fidelity"] or {}
    failing = [task for task, rec in records.items() if not (rec or {}).get("passed")]
    return len(records) - len(failing), len(records), failing


def fairness_rows(facts: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(attribute, row) for every product × group row of every protected attribute."""
    attributes = (facts["fairness"] or {}).get("attributes") or {}
    return [(attr, row) for attr, block in attributes.items() for row in (block or {}).get("rows") or []]


def fairness_violations(facts: Mapping[str, Any]) -> list[str]:
    """One sentence per violating row, naming attribute, product, group and the breached measures."""
    out = []
    for attr, row in fairness_rows(facts):
        if row.get("violations"):
            measures = listing(describe(v) for v in row["violations"])
            out.append(f"{attr} = {row.get('group')} on product {row.get('product')}: {measures} "
                       f"(DI {num(row.get('disparate_impact'))}, SPD {num(row.get('parity_difference'))}, "
                       f"EOD {num(row.get('opportunity_difference'))})")
    attributes = (facts["fairness"] or {}).get("attributes") or {}
    for attr, block in attributes.items():   # attribute-level findings not tied to a row
        if not any(row.get("violations") for row in (block or {}).get("rows") or []):
            out += [f"{attr}: {describe(v)}" for v in (block or {}).get("violations") or []]
    return out


def fairness_status(facts: Mapping[str, Any]) -> str:
    """``pass`` / ``FAIL`` / ``not judged``: a report where no row could be judged is no silent pass."""
    if not any(row.get("judged") for _, row in fairness_rows(facts)):
        return "not judged"
    return "pass" if (facts["fairness"] or {}).get("passed") and not fairness_violations(facts) else "FAIL"


def fairness_verdict(facts: Mapping[str, Any]) -> str:
    """``fairness_status`` with the counts behind it, or why there is no verdict."""
    judged = sum(1 for _, row in fairness_rows(facts) if row.get("judged"))
    if not judged:
        min_group = num(((facts["fairness"] or {}).get("thresholds") or {}).get("min_group"))
        return (f"not judged: no product × group row could be judged (groups below {min_group} customers or too few "
                "qualified customers)")
    if fairness_status(facts) == "pass":
        return f"pass ({judged} rows judged, no violation)"
    return f"FAIL ({len(fairness_violations(facts))} violation(s) over {judged} judged rows)"


def no_violation(facts: Mapping[str, Any]) -> str:
    """The sentence for a report without violations, which is only reassuring if rows were judged."""
    if fairness_status(facts) == "not judged":
        return "No violation can be reported because no row was judged; this is an absence of evidence, not a pass."
    return "No fairness violation was found this month."


def describe(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={num(v)}" for k, v in value.items())
    return str(value)


def dominant_experts(weights: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """Expert -> tasks where its mean gate weight is the largest, ordered by how many tasks it leads."""
    leads: dict[str, list[str]] = {}
    for task, row in weights.items():
        numeric = {e: w for e, w in (row or {}).items() if is_num(w)}
        if numeric:
            leads.setdefault(max(numeric, key=numeric.get), []).append(task)
    return dict(sorted(leads.items(), key=lambda kv: (-len(kv[1]), kv[0])))


def gate_sentence(weights: Mapping[str, Mapping[str, Any]]) -> str:
    leads = dominant_experts(weights)
    if not leads:
        return "No gate weights were recorded for this month, so no expert can be said to dominate any task."
    parts = [f"**{e}** leads {len(t)} task(s) ({', '.join(t)})" for e, t in leads.items()]
    experts = {e for row in weights.values() for e in (row or {})}
    idle = sorted(experts - set(leads))
    tail = f"; {', '.join(idle)} lead(s) no task" if idle else ""
    return "By mean layer-0 gate weight, " + "; ".join(parts) + tail + "."


def lineage_digest(facts: Mapping[str, Any]) -> str:
    """One phrase of provenance, quoted by the regulatory sections."""
    lineage = facts["lineage"] or {}
    dataset = lineage.get("dataset") or {}
    files = lineage.get("raw_files") or []
    return (f"dataset {dataset.get('name') or 'n/a'} (source {dataset.get('source') or 'n/a'}, fingerprint "
            f"{short_hash(dataset.get('fingerprint'))}), {len(files)} raw file(s) with "
            f"{num(sum(f.get('rows') or 0 for f in files))} rows, Phase-0 state "
            f"`{lineage.get('phase0_state') or 'n/a'}`, training set `{lineage.get('training_set') or 'n/a'}`")
