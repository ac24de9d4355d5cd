"""``quality.md``: the comparison table and everything needed to read it, rendered from ``quality.json``."""

from __future__ import annotations

from typing import Any


def render(record: dict[str, Any]) -> str:
    data, seeds, oracle = record["data"], record["seeds"], record["oracle"]
    comparison = record["comparison"]
    lines = [
        "# Teacher quality: every model on the held-out test months",
        "",
        f"Command: `python -m benchmarks.quality --customers {data['customers']}` "
        f"(commit {record['commit']}). Data: {data['source']}, {data['customers']:,} customers, generator seed "
        f"{seeds['data']}, training set of {data['rows_per_month']:,} customers per snapshot month "
        f"(rows: {data['rows']}), split {data['split']}. Neural models: seeds {seeds['neural']}. "
        f"Intervals: 95% hierarchical bootstrap ({record['resamples']} resamples of test customers and seeds); "
        f"advantages are paired, against {comparison['reference']}.",
        "",
        record["markdown"],
        "",
        f"Oracle: {oracle['customers']:,} customers of {oracle['month']}, {oracle['futures']} simulated futures each "
        "from the generator's hidden state (finai_models/data/oracle.py); multiclass ceilings are the tuned "
        "macro-F1, regression ceilings the oracle's MAE. Share = (model - chance) / (oracle - chance).",
        "",
        "Seconds: " + ", ".join(f"{k} {v:,.0f}" for k, v in record["seconds"].items()) + ".",
    ]
    students = record["models"].get("students")
    if students:
        lines += ["", f"Students: {students['passed']} of {len(students['fidelity'])} passed their fidelity gates; "
                  f"distilled from {students['teacher_run']} on rows {students['rows']}."]
    for note in record.get("notes", []):
        lines += ["", note]
    return "\n".join(lines) + "\n"
