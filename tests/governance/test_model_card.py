"""The monthly model card: complete sections, valid plots, self-contained HTML, explicit gaps, regulatory points."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from finai_models.governance.model_card import (
    REQUIRED_KEYS,
    Section,
    build_sections,
    empty_sections,
    render_model_card,
)

TASKS = [("churn_signal", "binary", "auc"), ("product_stability", "regression", "mae"),
         ("nba_primary", "multiclass", "macro_f1"), ("cross_sell_count", "regression", "mae"),
         ("will_acquire_deposits", "binary", "auc"), ("will_acquire_investments", "binary", "auc"),
         ("will_acquire_accounts", "binary", "auc"), ("will_acquire_lending", "binary", "auc"),
         ("will_acquire_payments", "binary", "auc"), ("segment_prediction", "multiclass", "macro_f1"),
         ("next_mcc", "multiclass", "macro_f1"), ("mcc_diversity_trend", "regression", "mae"),
         ("top_mcc_shift", "binary", "auc")]
EXPERTS = ["deepfm", "temporal", "hgcn", "perslay", "lightgcn", "causal", "optimal_transport"]
PRODUCTS = ["term_deposit", "savings_account", "e_account", "credit_card"]
SECTION_IDS = ["summary", "intended-use", "model", "performance", "gate-weights", "fidelity", "drift", "fairness",
               "serving", "lineage", "checks", "annex-iv", "fsc"]
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def _route(i: int) -> str:
    return "rule" if i == 12 else ("direct" if i in (3, 11) else "distill")


def _fairness_block(reference: str, groups: dict[str, int], judged: bool) -> dict[str, Any]:
    rows = []
    for p, product in enumerate(PRODUCTS):
        for g, group in enumerate(x for x in groups if x != reference):
            di = round(0.9 + 0.03 * p - 0.02 * g, 3)
            rows.append({"product": product, "group": group, "n": groups[group], "n_reference": groups[reference],
                         "rate": round(0.4 * di, 3), "rate_reference": 0.4, "disparate_impact": di,
                         "di_ci": [round(di - 0.06, 3), round(di + 0.06, 3)],
                         "parity_difference": round(0.4 * di - 0.4, 3),
                         "spd_ci": [-0.09, 0.03], "qualified": 12, "qualified_reference": 80,
                         "opportunity_difference": None if g else 0.02, "eod_ci": None if g else [-0.05, 0.09],
                         "judged": judged, "violations": []})
    return {"reference": reference, "groups": groups, "rows": rows, "violations": [],
            "not_observable": [f"EOD for {reference}-vs-65+ on credit_card: fewer than 30 qualified customers"],
            "passed": True}


def full_facts() -> dict[str, Any]:
    """A realistic month: 13 tasks, the 7-expert PLE, drift with a previous month, judged fairness."""
    routes = {name: _route(i) for i, (name, _, _) in enumerate(TASKS)}
    tasks, fidelity, gates = [], {}, {}
    for i, (name, kind, metric) in enumerate(TASKS):
        base = {"auc": 0.70, "macro_f1": 0.41, "mae": 0.52}[metric]
        student = None if routes[name] == "rule" else round(base + 0.01 * (i % 3), 4)
        tasks.append({"name": name, "type": kind, "metric": metric, "teacher": round(base + 0.02, 4),
                      "student": student, "baseline": round(base - 0.01, 4), "route": routes[name]})
        gap_key = {"auc": "auc_gap", "macro_f1": "macro_f1_gap", "mae": "mae_gap"}[metric]
        fidelity[name] = ({"passed": True, "metrics": {}} if routes[name] == "rule" else
                          {"passed": True, "metrics": {gap_key: round(0.004 * (i % 4), 4), "rank_corr": 0.93}})
        weights = [1.0 + ((i + 2 * j) % 7 == 0) * 3 for j in range(len(EXPERTS))]
        gates[name] = {e: round(w / sum(weights), 4) for e, w in zip(EXPERTS, weights, strict=True)}
    return {
        "month": "2025-12", "generated_at": "2026-11-29T22:00:00Z", "system": "FinAI",
        "model": {"champion_month": "2025-12", "promoted_at": "2026-01-03T08:00:00Z", "audit_seq": 3,
                  "decision": "promote", "reasons": ["challenger beats champion on 9 of 13 tasks", "all gates green"],
                  "teacher": {"architecture": "PLE", "experts": EXPERTS, "run_dir": "/work/runs/teacher-2025-12",
                              "epochs": 12, "parameters": 1234567},
                  "students": {"dir": "/work/students/2025-12", "routes": routes},
                  "code_versions": {"teacher/ple": "ple-v1", "distill/student": "student-v2"}},
        "tasks": tasks, "gate_weights": gates, "fidelity": fidelity,
        "drift": {"month": "2025-12", "reference_month": "2023-12", "previous_month": "2025-11",
                  "thresholds": {"warning": 0.1, "critical": 0.25, "min_critical_features": 5,
                                 "retrain_after_months": 3},
                  "features": {"rows_reference": 2000, "rows_current": 2000, "columns": 1211, "warning": 33,
                               "critical": 0, "max_psi": 0.1837,
                               "top": [{"feature": "roll_90d_sum", "group": "txn_rolling_stats", "psi": 0.1837,
                                        "severity": "warning"},
                                       {"feature": "hmm_state_3", "group": "hmm_states", "psi": 0.121,
                                        "severity": "warning"}],
                               "by_group": {"demographics": 0.02, "txn_rolling_stats": 0.14, "hmm_states": 0.11,
                                            "graph_collaborative": 0.04},
                               "status": "warning"},
                  "predictions": {"available": True, "max_psi": 0.0312, "warning": 0, "critical": 0, "status": "ok",
                                  "tasks": {name: {"psi": round(0.002 * (i + 1), 4), "severity": "ok"}
                                            for i, (name, _, _) in enumerate(TASKS)}},
                  "feature_status": "warning", "prediction_status": "ok", "status": "warning", "critical_streak": 0,
                  "retrain_requested": False},
        "fairness": {"customers": 2000,
                     "thresholds": {"disparate_impact": [0.8, 1.25], "max_parity_difference": 0.1,
                                    "max_opportunity_difference": 0.1, "min_group": 30, "confidence": 0.95},
                     "attributes": {"age_band": _fairness_block("35-49", {"<35": 526, "35-49": 987, "50-64": 354,
                                                                          "65+": 133}, True),
                                    "gender": _fairness_block("M", {"M": 1010, "F": 990}, True)},
                     "passed": True},
        "serving": {"bundle": {"path": "/work/bundles/finai-2025-12.zip", "sha256": SHA, "zip_mb": 4.9, "files": 40,
                               "uri": "s3://finai-bundles/finai-2025-12.zip"},
                    "customers": 2000, "recommendations_per_customer": 3.0, "paths": {"model": 1990, "rule": 10},
                    "top_products": {"e_account": 0.9, "direct_debit": 0.55, "credit_card": 0.31},
                    "cold_start_seconds": 0.34,
                    "controls": {"kill_switch": "env FINAI_KILL_SWITCH or DynamoDB",
                                 "opt_out": "opt-out list checked before scoring",
                                 "audit": "HMAC-SHA256 chain, verified: True",
                                 "suitability": "KFCPA §17, fail-closed above risk 1"}},
        "lineage": {"dataset": {"name": "synthetic", "fingerprint": "abc123def4567890", "source": "synthetic"},
                    "raw_files": [{"table": "customers", "month": "2025-12", "path": "/work/raw/customers.parquet",
                                   "sha256": SHA, "rows": 2000},
                                  {"table": "transactions", "month": "2025-12", "path": "/work/raw/txn.parquet",
                                   "sha256": "0" * 64, "rows": 61234}],
                    "phase0_state": "v-abc", "training_set": "v-def",
                    "split": {"train": ["2023-01", "2023-12"], "validation": ["2024-01", "2024-03"],
                              "test": ["2024-04", "2024-06"]},
                    "feature_groups": [{"name": "demographics", "columns": 11}, {"name": "txn_lag_tensor",
                                                                                  "columns": 800}],
                    "runs": [{"asset": "serving/bundle", "run_id": "run-7f3a", "timestamp": "2026-01-03T07:55:00Z"}]},
        "checks": [{"asset": "distill/student", "check": "student_fidelity", "passed": True, "severity": "ERROR",
                    "partition": f"2025-12|{name}"} for name, _, _ in TASKS],
        "intended_use": {},
    }


def sparse_facts() -> dict[str, Any]:
    """First month: no previous month, no judged fairness row, unmeasured metrics, nothing optional recorded."""
    facts = full_facts()
    facts["drift"]["previous_month"] = None
    facts["drift"].update(predictions={"available": False, "status": "not_available", "tasks": {}},
                          prediction_status="not_available")
    for block in facts["fairness"]["attributes"].values():
        for row in block["rows"]:
            row.update(judged=False, disparate_impact=None, di_ci=None)
        block["not_observable"] = []
    for task in facts["tasks"]:
        task.update(teacher=None, student=None, baseline=None)
    facts.update(gate_weights={}, fidelity={}, checks=[], intended_use={})
    facts["lineage"].update(raw_files=[], runs=[], split={})
    facts["serving"]["controls"] = {}
    return facts


def _text(sections: list[Section], section_id: str) -> str:
    """Body of a section and all its subsections."""
    def walk(items: list[Section]) -> str:
        return "\n".join(s.body + "\n" + walk(s.subsections) for s in items)

    section = next(s for s in _flat(sections) if s.id == section_id)
    return section.body + "\n" + walk(section.subsections)


def _flat(sections: list[Section]) -> list[Section]:
    return [x for s in sections for x in [s, *_flat(s.subsections)]]


def test_render_writes_markdown_html_and_valid_plots(tmp_path: Path) -> None:
    out = render_model_card(full_facts(), tmp_path / "card")
    assert out["empty_sections"] == []
    assert len(out["plots"]) >= 5
    page = Path(out["html"]).read_text(encoding="utf-8")
    markdown = Path(out["markdown"]).read_text(encoding="utf-8")
    for plot in map(Path, out["plots"]):
        data = plot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, plot
        assert f"](plots/{plot.name})" in markdown
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == len(out["plots"])
    assert "<img src=\"plots/" not in page                       # self-contained: no relative images
    for section_id in SECTION_IDS:
        assert f'id="{section_id}"' in page and f'<a id="{section_id}"></a>' in markdown
        assert section_id in out["sections"]
    assert {"drift_predictions", "fairness_age_band", "fairness_gender", "gate_weights"} <= {
        Path(p).stem for p in out["plots"]}


def test_sections_are_ordered_and_nonempty() -> None:
    sections = build_sections(full_facts())
    assert [s.id for s in sections] == SECTION_IDS
    assert empty_sections(sections) == []


def test_sparse_facts_say_what_is_not_available(tmp_path: Path) -> None:
    out = render_model_card(sparse_facts(), tmp_path / "card")
    assert out["empty_sections"] == []
    sections = build_sections(sparse_facts())
    assert "Prediction drift: not available" in _text(sections, "drift-predictions")
    assert "no previous month" in _text(sections, "drift-predictions")
    assert "not judged" in _text(sections, "fairness") and "No row was judged" in _text(sections, "fairness")
    assert "Not available" in _text(sections, "gate-weights") and "Not available" in _text(sections, "fidelity")
    assert "not measured" in _text(sections, "performance")
    assert "No asset check result was recorded" in _text(sections, "checks")
    assert "Default statement" in _text(sections, "intended-use")
    stems = {Path(p).stem for p in out["plots"]}
    assert "drift_predictions" not in stems and not any(s.startswith("fairness_") for s in stems)


@pytest.mark.parametrize("empty", [{}, None])
def test_emptied_values_still_give_a_complete_card(empty: Any, tmp_path: Path) -> None:
    facts = full_facts()
    for key in REQUIRED_KEYS[3:]:
        facts[key] = empty
    facts["tasks"] = [{"name": "churn_signal", "metric": "auc", "teacher": None}]
    facts["gate_weights"] = {"churn_signal": None}
    out = render_model_card(facts, tmp_path)
    assert out["empty_sections"] == [] and out["plots"] == []
    assert "Not available" in Path(out["markdown"]).read_text(encoding="utf-8")


def test_rerender_removes_stale_plots(tmp_path: Path) -> None:
    render_model_card(full_facts(), tmp_path)
    render_model_card(sparse_facts(), tmp_path)
    assert not (tmp_path / "plots" / "drift_predictions.png").exists()


def test_empty_sections_detects_blank_bodies() -> None:
    sections = build_sections(full_facts())
    sections[2].body = "   \n"
    sections[-1].subsections[0].body = ""
    sections.append(Section("forced", "Forced empty", ""))
    assert empty_sections(sections) == ["model", "fsc-governance", "forced"]


def test_regulatory_points_cite_the_facts() -> None:
    facts = full_facts()
    sections = build_sections(facts)
    annex = next(s for s in sections if s.id == "annex-iv")
    fsc = next(s for s in sections if s.id == "fsc")
    assert [s.id for s in annex.subsections] == [f"annex-iv-{i}" for i in range(1, 10)]
    assert [s.id for s in fsc.subsections] == ["fsc-governance", "fsc-data", "fsc-validation", "fsc-fairness",
                                               "fsc-explainability", "fsc-consumer-protection", "fsc-monitoring"]
    assert all(re.search("[가-힣]", s.title) and re.search("[A-Za-z]", s.title) for s in fsc.subsections)
    points = {s.id: s.body for s in annex.subsections}
    assert "teacher 0.720, student 0.710" in points["annex-iv-4"] and "13 of 13 tasks pass" in points["annex-iv-4"]
    assert "2025-12" in points["annex-iv-6"] and "audit sequence 3" in points["annex-iv-6"]
    assert "0.25" in points["annex-iv-9"] and "after 3 consecutive critical months" in points["annex-iv-9"]
    assert points["annex-iv-7"].startswith("No harmonised standard is applied yet")
    assert points["annex-iv-8"].startswith("Not issued")
    assert "0.184" in _text(sections, "drift") and SHA[:12] in _text(sections, "lineage")
    assert "0.90" in _text(sections, "fsc-fairness") and SHA[:12] in _text(sections, "annex-iv")


def test_fairness_violation_is_named(tmp_path: Path) -> None:
    facts = full_facts()
    row = next(r for r in facts["fairness"]["attributes"]["age_band"]["rows"]
               if r["product"] == "credit_card" and r["group"] == "65+")
    row.update(disparate_impact=0.71, di_ci=[0.62, 0.79], violations=["disparate_impact"])
    facts["fairness"]["attributes"]["age_band"]["passed"] = False
    facts["fairness"]["passed"] = False
    sections = build_sections(facts)
    for section_id in ("fairness", "fsc-fairness"):
        text = _text(sections, section_id)
        assert "credit_card" in text and "65+" in text and "0.710" in text, section_id
    assert "FAIL" in _text(sections, "summary")
    page = Path(render_model_card(facts, tmp_path)["html"]).read_text(encoding="utf-8")
    assert '<td class="bad">VIOLATION: disparate_impact</td>' in page


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_top_level_key_raises(key: str, tmp_path: Path) -> None:
    facts = full_facts()
    del facts[key]
    with pytest.raises(ValueError, match=repr(key)):
        render_model_card(facts, tmp_path)


def test_text_is_escaped_in_html(tmp_path: Path) -> None:
    facts = copy.deepcopy(full_facts())
    facts["model"]["reasons"] = ["<script>alert(1)</script> & more"]
    page = Path(render_model_card(facts, tmp_path)["html"]).read_text(encoding="utf-8")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; more" in page
