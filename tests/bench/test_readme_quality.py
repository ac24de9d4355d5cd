"""README's teacher-quality block is exactly what the committed results file renders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.quality.readme import BEGIN, END, block, render_readme

REPO = Path(__file__).resolve().parents[2]


def test_readme_block_matches_the_committed_results():
    results = REPO / "benchmarks" / "results" / "quality.json"
    record = json.loads(results.read_text())
    readme = (REPO / "README.md").read_text()
    assert block(record) in readme, "README's quality block is stale: run python -m benchmarks.quality.readme"


def test_render_replaces_only_the_block_and_needs_the_markers():
    record = json.loads((REPO / "benchmarks" / "results" / "quality.json").read_text())
    text = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    out = render_readme(text, record)
    assert out.startswith("intro\n") and out.endswith("\noutro\n") and "old table" not in out
    with pytest.raises(SystemExit, match="no quality block"):
        render_readme("no markers here", record)
