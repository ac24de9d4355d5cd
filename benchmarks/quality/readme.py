"""README's teacher-quality block, generated from ``benchmarks/results/quality.json`` (never by hand).

    python -m benchmarks.quality.readme          # rewrite the block between the markers in README.md

``tests/bench/test_readme_quality.py`` fails when README's block is not what this renders from the
committed results, so the figures in README cannot drift from the file that measured them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- quality:begin (python -m benchmarks.quality.readme) -->", "<!-- quality:end -->"


def block(record: dict[str, Any]) -> str:
    data, comparison = record["data"], record["comparison"]
    verdicts = comparison["verdicts"].get("ple", {})
    students = record["models"].get("students")
    head = (f"Measured by `python -m benchmarks.quality --customers {data['customers']}` "
            f"(`benchmarks/results/quality.md`, commit {record['commit'][:12]}): {data['customers']:,} synthetic "
            f"customers, {data['rows_per_month']:,} sampled per snapshot month ({data['rows']['train']:,} training, "
            f"{data['rows']['validation']:,} validation and {data['rows']['test']:,} test rows), split "
            f"train {'..'.join(data['split']['train'])}, validation {'..'.join(data['split']['validation'])}, test "
            f"{'..'.join(data['split']['test'])}; neural models over seeds {record['seeds']['neural']}; 95% intervals "
            "from a bootstrap of test customers and seeds. ")
    if comparison["reference"] in comparison["mean_binary_auc"]:
        head += (f"The teacher against the tuned per-task LightGBM: {verdicts.get('win', 0)} wins, "
                 f"{verdicts.get('tie', 0)} ties, {verdicts.get('loss', 0)} losses (a win only where the paired "
                 "interval is wholly above zero).")
    else:
        head += f"This run has no {comparison['reference']} reference, so there are no paired verdicts."
    if students:
        head += (f" Students distilled from the first seed's teacher: {students['passed']} of "
                 f"{len(students['fidelity'])} within their fidelity gates.")
    return "\n".join([BEGIN, head, "", record["markdown"], END])


def render_readme(readme: str, record: dict[str, Any]) -> str:
    if BEGIN not in readme or END not in readme:
        raise SystemExit(f"README.md has no quality block ({BEGIN} ... {END})")
    before, rest = readme.split(BEGIN, 1)
    _, after = rest.split(END, 1)
    return before + block(record) + after


def main() -> int:
    record = json.loads((REPO / "benchmarks" / "results" / "quality.json").read_text())
    path = REPO / "README.md"
    path.write_text(render_readme(path.read_text(), record))
    print(f"README.md: quality block from benchmarks/results/quality.json ({record['commit'][:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
