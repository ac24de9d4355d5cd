"""The monthly model card: build its sections from the month's facts and render Markdown, HTML and plots.

The Dagster asset collects the facts into a plain dict and calls ``render_model_card``; the asset
check ``model_card_complete`` calls ``empty_sections`` so a heading without content fails the month
instead of reaching a regulator. Nothing here imports Dagster, so a card can be rebuilt offline
from an archived facts file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from finai_models.governance import monitoring, regulatory, sections
from finai_models.governance.common import Plot, Section
from finai_models.governance.page import to_html, to_markdown

__all__ = ["REQUIRED_KEYS", "Plot", "Section", "build_sections", "empty_sections", "render_model_card"]

REQUIRED_KEYS = ("month", "generated_at", "system", "model", "tasks", "gate_weights", "fidelity", "drift",
                 "fairness", "serving", "lineage", "checks", "intended_use")
BUILDERS = (sections.summary, sections.intended_use, sections.model_and_training, sections.performance,
            sections.gate_weights, sections.fidelity, monitoring.drift, monitoring.fairness, monitoring.serving,
            monitoring.lineage, monitoring.checks, regulatory.annex_iv, regulatory.fsc)


def _walk(items: Sequence[Section]) -> Iterator[Section]:
    for section in items:
        yield section
        yield from _walk(section.subsections)


def build_sections(facts: Mapping[str, Any]) -> list[Section]:
    """The card's 13 sections in order; raises ``ValueError`` naming the first missing top-level key.

    Values under the keys may be empty (``{}``, ``[]``, ``None``): the sections then say what is
    missing and why. A missing key, by contrast, means the collecting asset is broken."""
    for key in REQUIRED_KEYS:
        if key not in facts:
            raise ValueError(f"model card facts lack the required key {key!r}")
    return [build(facts) for build in BUILDERS]


def empty_sections(items: Sequence[Section]) -> list[str]:
    """Ids of the sections and subsections whose body is empty or whitespace, in document order."""
    return [s.id for s in _walk(items) if not (s.body or "").strip()]


def render_model_card(facts: Mapping[str, Any], out_dir: Path) -> dict[str, Any]:
    """Write ``model_card.md``, ``model_card.html`` and ``plots/*.png`` under ``out_dir``.

    PNGs left in ``plots/`` by an earlier render are removed first, so the folder never holds a
    plot (say, prediction drift) that this month's card does not show. Returns the written paths,
    the section ids and the empty-section ids, all as strings, for asset metadata."""
    built = build_sections(facts)
    out_dir = Path(out_dir)
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    for stale in plot_dir.glob("*.png"):
        stale.unlink()
    pngs = {p.name: p.draw(plot_dir / f"{p.name}.png") for s in _walk(built) for p in s.plots}
    markdown, page = out_dir / "model_card.md", out_dir / "model_card.html"
    markdown.write_text(to_markdown(facts, built), encoding="utf-8")
    page.write_text(to_html(facts, built, pngs), encoding="utf-8")
    return {"markdown": str(markdown), "html": str(page), "plots": [str(p) for p in pngs.values()],
            "sections": [s.id for s in _walk(built)], "empty_sections": empty_sections(built)}
