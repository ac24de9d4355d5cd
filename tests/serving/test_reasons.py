"""L1 reasons: per-customer themes from contributions and gates, only that customer's numbers, ko/en."""

from __future__ import annotations

import re

import pytest
import yaml

from finai_models.config import REPO_ROOT
from finai_serving.reasons import COLD_START, ConfigError, ReasonEngine

PRODUCT = {"id": "commuter_check", "name": {"ko": "출퇴근 체크카드", "en": "Commuter Check Card"}, "task": "t"}
HANGUL = re.compile(r"[\uac00-\ud7a3]")
DIGITS = re.compile(r"\d+(?:,\d{3})*")

SPENDER = {
    "facts": {"age": 29, "tenure_months": 14, "spend_90d": 2310.6, "spend_change_pct": 15, "txn_count_90d": 87,
              "top_category_1": "transit", "top_category_1_share_pct": 41, "top_category_2": "grocery",
              "top_category_2_share_pct": 22, "num_products": 2},
    "contrib": {"txn_rolling_stats": 0.61, "mamba_temporal": 0.22, "merchant_hierarchy": 0.08, "demographics": -0.3},
    "gates": {"task": 0.25, "temporal": 0.45, "hgcn": 0.1, "deepfm": 0.1, "lightgcn": 0.05, "causal": 0.05},
}
SAVER = {
    "facts": {"age": 58, "tenure_months": 212, "income": 64250.0, "num_products": 5, "acquisitions_12m": 2,
              "spend_90d": 420.0, "spend_change_pct": -12, "txn_count_90d": 9, "top_category_1": "health"},
    "contrib": {"product_holdings": 0.44, "product_hierarchy": 0.21, "graph_collaborative": 0.1,
                "txn_rolling_stats": 0.05},
    "gates": {"task": 0.3, "lightgcn": 0.3, "causal": 0.25, "temporal": 0.05, "deepfm": 0.1},
}


def printed_numbers(facts: dict) -> set[int]:
    """What the test accepts as 'a fact of that customer': each numeric fact's rounded magnitude."""
    return {abs(round(v)) for v in facts.values() if isinstance(v, int | float)}


def numbers_in(text: str, product_name: str) -> set[int]:
    return {int(t.replace(",", "")) for t in DIGITS.findall(text.replace(product_name, ""))}


def explain(engine, customer, locale="en", key="c-1", product=PRODUCT):
    return engine.explain(product, customer["facts"], customer["contrib"], customer["gates"], locale, key)


def test_config_covers_every_feature_group_expert_and_category(reasons_config):
    groups = {g["name"] for g in yaml.safe_load((REPO_ROOT / "configs/feature_groups.yaml").read_text())["groups"]}
    covered = {g for t in reasons_config["themes"].values() for g in t["groups"]}
    assert covered == groups and len(groups) == 17
    experts = {e for t in reasons_config["themes"].values() for e in t["experts"]}
    assert experts == {"deepfm", "temporal", "hgcn", "perslay", "lightgcn", "causal", "optimal_transport"}
    mcc = yaml.safe_load((REPO_ROOT / "configs/mcc_hierarchy.yaml").read_text())["l1"]
    assert set(reasons_config["categories"]) == {l2 for l1 in mcc.values() for l2 in l1}


@pytest.mark.parametrize("locale", ["en", "ko"])
def test_two_customers_get_their_own_theme_text_and_numbers(engine, locale):
    a, b = explain(engine, SPENDER, locale), explain(engine, SAVER, locale)
    assert (a.theme, b.theme) == ("spending_trend", "holdings")
    assert a.text != b.text and not a.fallback and not b.fallback
    assert a.safety.passed and b.safety.passed and a.layer == b.layer == "L1"
    for reason, customer in ((a, SPENDER), (b, SAVER)):
        found = numbers_in(reason.text, reason.product_name)
        assert found, reason.text                         # a personal reason prints a fact
        assert found <= printed_numbers(customer["facts"]), (reason.text, customer["facts"])
        assert set(reason.facts_used) <= set(customer["facts"])
        assert all(v in reason.text for v in reason.facts_used.values())
        assert reason.drivers[0][0] == reason.theme and len(reason.drivers) == 3


def test_locales_print_the_same_facts_in_their_own_script(engine):
    for key in ("c-1", "c-2", "c-3", "c-4"):
        en, ko = explain(engine, SPENDER, "en", key), explain(engine, SPENDER, "ko", key)
        assert en.template_id == ko.template_id and en.theme == ko.theme
        assert en.facts_used.keys() == ko.facts_used.keys()
        assert numbers_in(en.text, en.product_name) == numbers_in(ko.text, ko.product_name)
        assert not HANGUL.search(en.text) and HANGUL.search(ko.text)
        assert "Commuter Check Card" in en.text and "출퇴근 체크카드" in ko.text
    assert explain(engine, SPENDER, "en", "c-1").facts_used.get("top_category_1") == "public transport"
    assert explain(engine, SPENDER, "ko", "c-1").facts_used.get("top_category_1") == "대중교통"


def test_unknown_locale_is_refused(engine):
    with pytest.raises(ValueError, match="locale"):
        explain(engine, SPENDER, "fr")


@pytest.mark.parametrize("facts", [{}, {"age": 41}])
@pytest.mark.parametrize("locale", ["en", "ko"])
def test_a_cold_start_customer_gets_a_cold_start_text_without_numbers(engine, facts, locale):
    contrib = {"demographics": 0.3, "gmm_clustering": 0.1}
    r = engine.explain(PRODUCT, facts, contrib, {"deepfm": 0.5, "task": 0.5}, locale, "new")
    assert r.theme == COLD_START and r.template_id.startswith(f"{COLD_START}.{locale}.")
    assert not DIGITS.search(r.text) and r.facts_used == {} and r.safety.passed and not r.fallback
    assert r.drivers[0][0] == "profile"                   # the model leaned on the profile; facts were too thin


def test_no_positive_signal_at_all_gives_the_cold_start(engine):
    r = engine.explain(PRODUCT, SPENDER["facts"], {"txn_rolling_stats": -0.4}, {"task": 1.0}, "en", "k")
    assert r.theme == COLD_START and all(score == 0 for _, score, _, _ in r.drivers)


def test_a_template_missing_a_fact_is_skipped(engine):
    facts = {"spend_change_pct": 15, "top_category_1": "transit"}     # no top_category_2, no spend_90d
    ids = {explain(engine, {**SPENDER, "facts": facts}, "en", f"k{i}").template_id for i in range(30)}
    assert ids == {"spending_trend.spend_rose_top1"}
    richer = {**facts, "top_category_2": "grocery", "spend_90d": 900}
    ids = {explain(engine, {**SPENDER, "facts": richer}, "en", f"k{i}").template_id for i in range(30)}
    assert ids == {"spending_trend.spend_rose_top1", "spending_trend.spend_rose_top2",
                   "spending_trend.spend_rose_amount"}        # the variant depends on the customer key


def test_an_unknown_category_counts_as_missing_and_the_next_theme_speaks(engine):
    facts = {"spend_change_pct": 15, "top_category_1": "moon_shop", "num_products": 3}
    r = explain(engine, {**SPENDER, "facts": facts})
    assert r.drivers[0][0] == "spending_trend" and r.theme != "spending_trend"
    assert "moon_shop" not in r.text and r.theme == "holdings" and r.facts_used == {"num_products": "3"}


def test_a_fall_prints_its_magnitude_with_the_falling_template(engine):
    facts = {"spend_change_pct": -12.4, "top_category_1": "health"}
    en, ko = explain(engine, {**SPENDER, "facts": facts}, "en"), explain(engine, {**SPENDER, "facts": facts}, "ko")
    assert en.template_id == "spending_trend.spend_fell_top1" and "fell 12%" in en.text and "-" not in en.text
    assert "12% 줄었고" in ko.text and en.facts_used["spend_change_pct"] == "12"


def test_conditions_see_the_value_as_printed_so_a_tiny_rise_is_steady(engine):
    facts = {"spend_change_pct": 0.4, "spend_90d": 1500.5, "top_category_1": "transit"}
    r = explain(engine, {**SPENDER, "facts": facts})
    assert r.template_id == "spending_trend.spend_steady" and "1,501 EUR" in r.text and "0%" not in r.text


def test_the_variant_is_stable_per_customer_and_the_key_is_hashed(engine):
    first = explain(engine, SPENDER, "en", "customer-0042")
    assert all(explain(engine, SPENDER, "en", "customer-0042").text == first.text for _ in range(5))
    assert "0042" not in first.customer_ref and len(first.customer_ref) == 32
    assert first.customer_ref != explain(engine, SPENDER, "en", "customer-0043").customer_ref


def test_facts_are_printed_by_one_formatter(engine):
    assert engine.render_fact("spend_90d", 1234567.5, "en") == "1,234,568"
    assert engine.render_fact("spend_change_pct", -7.5, "en") == "8"
    assert engine.render_fact("txn_count_90d", 2.5, "ko") == "3"            # half away from zero, not banker's
    assert engine.render_fact("top_category_1", "fuel", "ko") == "주유"
    for name, value in [("age", True), ("age", float("nan")), ("age", "41"), ("age", None),
                        ("top_category_1", "nope"), ("not_a_fact", 3)]:
        assert engine.render_fact(name, value, "en") is None


def test_theme_scores_follow_the_documented_formula(engine, reasons_config):
    alpha = reasons_config["gate_weight"]
    contrib = {"txn_rolling_stats": 0.50, "merchant_hierarchy": 0.45, "demographics": 0.2, "txn_behavior": -0.9}
    gates = {"task": 0.3, "temporal": 0.4, "hgcn": 0.1, "deepfm": 0.2}
    scores = {t: (s, cs, qs) for t, s, cs, qs in engine.scores(contrib, gates)}
    c_sum, q_sum = 0.50 + 0.45 + 0.2, 0.4 + 0.1 + 0.2           # negatives and the task expert left out
    expect_c = {"spending_trend": 0.50, "category_mix": 0.45, "profile": 0.1, "tenure": 0.1}  # demographics halves
    expect_q = {"spending_trend": 0.4, "category_mix": 0.1, "profile": 0.1, "activity": 0.1}  # deepfm halves
    for theme in engine.themes:
        cs, qs = expect_c.get(theme, 0.0) / c_sum, expect_q.get(theme, 0.0) / q_sum
        assert scores[theme] == pytest.approx(((1 - alpha) * cs + alpha * qs, cs, qs))
    without = {k: v for k, v in contrib.items() if k != "merchant_hierarchy"}
    nan_and_unknown = {**contrib, "merchant_hierarchy": float("nan"), "no_such_group": 5.0}
    assert engine.scores(nan_and_unknown, gates) == engine.scores(without, gates)


def test_a_gate_change_alone_can_change_the_theme_when_contributions_are_close(engine):
    contrib = {"txn_rolling_stats": 0.50, "merchant_hierarchy": 0.45}
    facts = SPENDER["facts"]
    temporal = engine.explain(PRODUCT, facts, contrib, {"task": 0.3, "temporal": 0.6, "hgcn": 0.1}, "en", "k")
    graph = engine.explain(PRODUCT, facts, contrib, {"task": 0.3, "temporal": 0.1, "hgcn": 0.3, "perslay": 0.3},
                           "en", "k")
    assert temporal.theme == "spending_trend" and graph.theme == "category_mix"
    # 0.7 * 0.50/0.95 + 0.3 * 0.1/0.7 < 0.7 * 0.45/0.95 + 0.3 * 0.6/0.7
    assert graph.drivers[0][1] == pytest.approx(0.7 * 0.45 / 0.95 + 0.3 * 0.6 / 0.7, abs=1e-4)
    wide = {"txn_rolling_stats": 0.90, "merchant_hierarchy": 0.05}        # far apart: gates cannot flip it
    assert engine.explain(PRODUCT, facts, wide, {"hgcn": 0.9, "task": 0.1}, "en", "k").theme == "spending_trend"


def _mutations():
    def tpl(cfg, theme="spending_trend", i=0):
        return cfg["templates"][theme][i]

    return {
        "prints a fact not in needs": lambda c: tpl(c).update(en=tpl(c)["en"] + " {age}"),
        "needs an unknown fact": lambda c: tpl(c)["needs"].append("shoe_size"),
        "no text for a locale": lambda c: tpl(c).pop("ko"),
        "unknown condition": lambda c: tpl(c).update(when={"spend_change_pct": {"about": 0}}),
        "condition on a category": lambda c: tpl(c).update(when={"top_category_1": {"gt": 0}}),
        "different facts per locale": lambda c: tpl(c).update(ko="{spend_change_pct}% {product} 상품입니다"),
        "theme without templates": lambda c: c["templates"].pop("tenure"),
        "templates for an unknown theme": lambda c: c["templates"].update(weather=c["templates"]["tenure"]),
        "gate weight above 1": lambda c: c.update(gate_weight=1.5),
        "unknown fact kind": lambda c: c["facts"].update(age="years"),
        "last safe text names the product": lambda c: c["safe"]["en"].__setitem__(-1, "Try {product}, it may fit."),
        "safe text fails the gate": lambda c: c["safe"]["en"].insert(0, "Act now: {product} is risk-free."),
        "cold-start text prints a fact": lambda c: c["cold_start"]["ko"].append("{age}세 고객님께 {product}"),
        "cold-start text fails the gate": lambda c: c["cold_start"]["en"].append("{product}: the best ever account!!"),
        "locales differ from the gate's": lambda c: c.update(locales=["ko", "en", "fr"]),
    }


@pytest.mark.parametrize("name", list(_mutations()))
def test_an_inconsistent_config_is_refused_at_load(reasons_config, name):
    ReasonEngine(reasons_config)                               # the shipped config loads
    _mutations()[name](reasons_config)
    with pytest.raises(ConfigError):
        ReasonEngine(reasons_config)
