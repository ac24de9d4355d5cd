"""``quality.md``: the comparison table and everything needed to read it, rendered from the results.

    python -m benchmarks.quality.report      # quality.md from quality.json (+ quality_changes.json)

The main run's ``quality.json`` gives the table; ``quality_changes.json`` (``--changes``), when
present, the measured effect of each change tried.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"


CHANGE_NOTES = {
    "codes_as_numbers": "code columns enter as plain numbers instead of embeddings",
    "zscore_inputs": "z-scored inputs instead of the quantile-normal encoding",
    "input_gate": "gates linear in the raw inputs instead of task queries over the experts' outputs",
    "wide_private_experts": "private experts over every routed column instead of a shared 128-wide projection",
    "unscaled_losses": "task losses not divided by their base-rate loss, Kendall weights at the model's learning rate",
    "six_epochs": "6 epochs, no early stopping (the old budget; the schedule stays plateau-halving)",
}


def changes_section(changes: dict[str, Any]) -> list[str]:
    """Each Step-7 change undone alone, against the full teacher, from ``quality_changes.json``
    (whose reference is the full teacher, so every advantage is the paired variant - full)."""
    tasks, data = changes["comparison"]["tasks"], changes["data"]
    lines = ["## Changes tried (each undone alone)", "",
             f"`python -m benchmarks.quality --changes --seeds {len(changes['seeds']['neural'])} --max-train-rows "
             f"{changes['max_train_rows']}` ({data['customers']:,} customers, the same training set; commit "
             f"{changes['commit'][:12]}). Each variant is the committed teacher with one change undone; a task "
             "counts where the paired 95% interval of (variant - full) excludes zero. Worse without the change "
             "means the change helps there.", "",
             "| variant | what is undone | mean binary AUC | tasks better without the change | "
             "tasks worse without the change |", "|---|---|---|---|---|"]
    mean = changes["comparison"]["mean_binary_auc"]
    for m in mean:
        name = "full" if m == "ple" else m.partition("-")[2] if m.startswith("ple-") else m
        verdict = {"win": [], "loss": []}
        for task, r in tasks.items():
            adv = r["models"].get(m, {}).get("advantage")
            if adv and adv["verdict"] in verdict:
                verdict[adv["verdict"]].append(task)
        what = CHANGE_NOTES.get(name, "the committed teacher" if name == "full" else "the tuned per-task baseline")
        lines.append(f"| {name} | {what} | {mean[m]:.4f} | {', '.join(verdict['win']) or '-'} | "
                     f"{', '.join(verdict['loss']) or '-'} |")
    return lines


def render(record: dict[str, Any], changes: dict[str, Any] | None = None) -> str:
    data, seeds, oracle = record["data"], record["seeds"], record["oracle"]
    comparison = record["comparison"]
    lines = [
        "# Teacher quality: every model on the held-out test months",
        "",
        f"Command: `python -m benchmarks.quality --customers {data['customers']}` "
        f"(commit {record['commit']}). Data: {data['source']}, {data['customers']:,} customers, generator seed "
        f"{seeds['data']}, training set of {data['rows_per_month']:,} customers per snapshot month "
        f"(rows: {data['rows']}), split {data['split']}; every model learns from the same "
        f"{record['max_train_rows']:,} training rows (a seeded sample of every training month). "
        f"Neural models: seeds {seeds['neural']}. "
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
    lgb = record["models"].get("lightgbm")
    if lgb:
        lines += ["", f"LightGBM: {lgb['candidates']} candidates per task (configs/teacher.yaml baselines.lightgbm."
                  "search), each early-stopped on the validation months; chosen per task: "
                  + "; ".join(f"{t} {c} ({lgb['rounds'][t]} rounds)" for t, c in (lgb["chosen"] or {}).items()) + "."]
    ple = record["models"].get("ple")
    if ple:
        lines += ["", f"PLE: {ple['parameters']:,} parameters; best epochs {ple['best_epoch']} of "
                  f"{ple['epochs']} run (early stopping, patience 3); median samples/s per seed "
                  f"{[round(v) for v in ple['samples_per_s']]}."]
    if changes:
        lines += ["", *changes_section(changes)]
    return "\n".join(lines) + "\n"


def main() -> int:
    record = json.loads((RESULTS / "quality.json").read_text())
    path = RESULTS / "quality_changes.json"
    changes = json.loads(path.read_text()) if path.is_file() else None
    (RESULTS / "quality.md").write_text(render(record, changes))
    print(f"wrote {RESULTS / 'quality.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
