"""The rule Safety Gate: planted claims, PII, invented numbers, length, script and tone are rejected."""

from __future__ import annotations

import pytest

from finai_serving.reasons import ReasonEngine
from finai_serving.safety import SafetyGate, number_values

EN = "Your card spending rose 15% over the last three months, so we suggest Commuter Check Card."
KO = "최근 석 달 카드 지출이 15% 늘었습니다. 그래서 출퇴근 체크카드 상품을 제안드립니다."
FACTS = {"spend_change_pct": "15"}
NAMES = {"en": "Commuter Check Card", "ko": "출퇴근 체크카드"}


@pytest.fixture(scope="module")
def gate(reasons_config_session) -> SafetyGate:
    return SafetyGate(reasons_config_session)


def check(gate, text, locale, facts=FACTS):
    return gate.check(text, facts, locale, NAMES[locale])


def test_the_clean_texts_pass(gate):
    assert check(gate, EN, "en").passed and check(gate, KO, "ko").passed
    assert check(gate, EN, "en").violations == []


@pytest.mark.parametrize("locale, planted, rule", [
    ("en", "It comes with guaranteed returns.", "claim:guaranteed_return"),
    ("en", "Your principal-protected savings cannot lose value.", "claim:guaranteed_return"),
    ("en", "It is completely risk-free.", "claim:no_risk"),
    ("en", "There is no risk at all.", "claim:no_risk"),
    ("en", "Act now, the offer is today only.", "claim:time_pressure"),
    ("en", "Don't miss it.", "claim:time_pressure"),
    ("en", "It is the best ever card.", "claim:superlative"),
    ("en", "It is the #1 card in Spain.", "claim:superlative"),
    ("ko", "원금 보장 상품입니다.", "claim:guaranteed_return_ko"),
    ("ko", "확정 수익을 드립니다.", "claim:guaranteed_return_ko"),
    ("ko", "무위험 상품입니다.", "claim:no_risk_ko"),
    ("ko", "손실이 없는 상품입니다.", "claim:no_risk_ko"),
    ("ko", "오늘만 드리는 혜택입니다.", "claim:time_pressure_ko"),
    ("ko", "놓치지 마세요.", "claim:time_pressure_ko"),
    ("ko", "업계 최고의 카드입니다.", "claim:superlative_ko"),
    ("en", "It fits you!!", "tone:repeated_exclamation"),
    ("en", "It is a GREAT fit.", "tone:shouting_caps"),
    ("en", "You must apply before Friday.", "tone:pressure_command"),
    ("en", "Sign up today.", "tone:pressure_command"),
    ("ko", "반드시 가입하세요.", "tone:pressure_command_ko"),
    ("ko", "잘 맞습니다!!", "tone:repeated_exclamation"),
    ("en", "It uses {spend_90d}.", "format:placeholder"),
    ("en", "```json```", "format:markup"),
])
def test_a_planted_claim_pushy_tone_or_markup_is_rejected(gate, locale, planted, rule):
    base = EN if locale == "en" else KO
    verdict = check(gate, f"{base} {planted}", locale)
    assert not verdict.passed and rule in verdict.violations


@pytest.mark.parametrize("planted, rule", [
    ("Reference 900101-1234567.", "pii:resident_registration_number"),
    ("Call 010-1234-5678.", "pii:phone_kr_mobile"),
    ("Call 02-123-4567.", "pii:phone"),
    ("Write to kim.minji@example.co.kr.", "pii:email"),
    ("Card 4111 1111 1111 1111.", "pii:card_number"),
    ("Card 4111111111111111.", "pii:card_number"),
    ("Account 110-234-567890.", "pii:account_number"),
])
@pytest.mark.parametrize("locale", ["en", "ko"])
def test_planted_personal_data_is_rejected(gate, planted, rule, locale):
    base = EN if locale == "en" else KO
    verdict = check(gate, f"{base} {planted}", locale)
    assert not verdict.passed and rule in verdict.violations


def test_personal_data_is_caught_even_when_every_number_is_a_fact(gate):
    phone = "010-1234-5678"
    verdict = gate.check(f"{EN} Call {phone}.", {"phone": phone, **FACTS}, "en", NAMES["en"])
    assert "pii:phone_kr_mobile" in verdict.violations and all(v.startswith("pii:") for v in verdict.violations)


def test_a_number_that_is_not_a_fact_is_rejected_and_passes_once_it_is(gate):
    text = EN.replace("15%", "17%")
    assert check(gate, text, "en").violations == ["number:17"]
    assert check(gate, text, "en", {"spend_change_pct": "17"}).passed
    assert gate.check(text, ["17"], "en", NAMES["en"]).passed           # a plain collection of strings works too
    ko = KO.replace("15%", "17%")
    assert check(gate, ko, "ko").violations == ["number:17"]


def test_numbers_compare_by_value(gate):
    assert number_values("1,234 EUR and 15% and 2.5") == {1234.0, 15.0, 2.5}
    text = "You spent 1234 EUR by card in the last three months, so we suggest Commuter Check Card."
    assert check(gate, text, "en", {"spend_90d": "1,234"}).passed
    assert check(gate, text, "en", {"spend_90d": "1,235"}).violations == ["number:1234"]
    # unsigned by design: the direction lives in the wording, chosen by the template's condition
    assert check(gate, EN.replace("rose 15%", "changed by -15%"), "en").passed


def test_digits_are_allowed_inside_the_product_name_only(gate):
    text = "Your card spending rose 15% over the last three months, so we suggest Saver 2030."
    assert gate.check(text, FACTS, "en", "Saver 2030").passed
    assert gate.check(text, FACTS, "en", "Saver").violations == ["number:2030"]
    assert gate.check(text + " It runs until 2030.", FACTS, "en", "Saver 2030").violations == ["number:2030"]


def test_the_product_name_is_not_a_claim_but_the_same_words_elsewhere_are(gate):
    text = "Your card spending rose 15% over the last three months, so we suggest our Guaranteed Return Saver."
    assert gate.check(text, FACTS, "en", "Guaranteed Return Saver").passed
    assert gate.check(text + " Returns are guaranteed.", FACTS, "en", "Guaranteed Return Saver").violations == [
        "claim:guaranteed_return"]


@pytest.mark.parametrize("locale, text, rule", [
    ("en", "Try it.", "length:under_20"),
    ("en", EN + " It fits." * 40, "length:over_300"),
    ("ko", "좋아요.", "length:under_15"),
    ("ko", KO + " 잘 맞습니다." * 20, "length:over_160"),
    ("en", EN + " 고객님께 추천합니다.", "script:hangul_in_text"),
    ("ko", "Your card spending rose 15% over the last three months. 추천합니다", "script:hangul_share_below_0.8"),
])
def test_length_and_script_rules(gate, locale, text, rule):
    verdict = check(gate, text, locale)
    assert not verdict.passed and rule in verdict.violations


def test_the_script_rule_ignores_a_latin_product_name_in_korean(gate):
    text = "최근 석 달 카드 지출이 15% 늘었습니다. 그래서 Commuter Check Card 상품을 제안드립니다."
    assert gate.check(text, FACTS, "ko", "Commuter Check Card").passed
    assert gate.check(text, FACTS, "ko", "").violations == ["script:hangul_share_below_0.8"]


def test_short_capitals_like_a_currency_code_are_fine(gate):
    assert check(gate, EN.replace("15%", "15% (EUR)"), "en").passed


def test_an_unknown_locale_is_refused(gate):
    with pytest.raises(ValueError, match="locale"):
        gate.check(EN, FACTS, "fr")


def test_a_gate_with_mismatched_locales_is_refused(reasons_config):
    reasons_config["safety"]["script"].pop("en")
    with pytest.raises(ValueError, match="locales"):
        SafetyGate(reasons_config)


PRODUCT = {"id": "p", "name": {"ko": "출퇴근 체크카드", "en": "Commuter Check Card"}}
FACTS_RAW = {"spend_change_pct": 15, "top_category_1": "transit"}
CONTRIB, GATES = {"txn_rolling_stats": 1.0}, {"temporal": 1.0}


@pytest.mark.parametrize("locale", ["en", "ko"])
def test_explain_falls_back_to_the_safe_text_when_a_template_plants_a_claim(reasons_config, locale):
    for spec in reasons_config["templates"]["spending_trend"]:
        spec["en"] += " It is risk-free."
        spec["ko"] += " 원금 보장 상품입니다."
    engine = ReasonEngine(reasons_config)
    r = engine.explain(PRODUCT, FACTS_RAW, CONTRIB, GATES, locale, "k")
    assert r.fallback and not r.safety.passed and r.theme == "spending_trend"
    assert r.safety.violations == (["claim:no_risk"] if locale == "en" else ["claim:guaranteed_return_ko"])
    assert r.text == reasons_config["safe"][locale][0].format(product=PRODUCT["name"][locale])
    assert r.template_id == f"safe.{locale}.0" and r.facts_used == {}
    assert engine.gate.check(r.text, {}, locale, r.product_name).passed


def test_explain_rejects_a_template_that_invents_a_number(reasons_config):
    for spec in reasons_config["templates"]["spending_trend"]:
        spec["en"] = spec["en"].replace("three months", "90 days")
    r = ReasonEngine(reasons_config).explain(PRODUCT, FACTS_RAW, CONTRIB, GATES, "en", "k")
    assert r.fallback and r.safety.violations == ["number:90"]


def test_a_product_name_too_long_for_any_text_gets_the_generic_safe_text(engine, reasons_config):
    product = {"id": "p", "name": {"en": "Card " * 80, "ko": "카드 " * 80}}
    r = engine.explain(product, FACTS_RAW, CONTRIB, GATES, "en", "k")
    assert r.fallback and "length:over_300" in r.safety.violations
    assert r.text == reasons_config["safe"]["en"][-1] and r.template_id == "safe.en.1"


@pytest.mark.parametrize("locale", ["en", "ko"])
def test_every_shipped_template_passes_the_gate_with_a_long_product_name(engine, reasons_config, locale):
    facts = {"age": 67, "tenure_months": 240, "income": 1234567, "num_products": 12, "spend_90d": 98765.4,
             "spend_change_pct": 45, "txn_count_90d": 412, "top_category_1": "car_rental_travel_agencies",
             "top_category_1_share_pct": 48, "top_category_2": "telecom_utilities", "top_category_2_share_pct": 31,
             "recency_days": 12, "online_ratio_pct": 77, "distinct_categories_180d": 24, "acquisitions_12m": 3}
    name = {"en": "Everyday Commuter Check Card Plus", "ko": "직장인 출퇴근 대중교통 체크카드 플러스"}[locale]
    currency = reasons_config["currency"][locale]
    for theme, specs in reasons_config["templates"].items():
        for spec in specs:
            used = {f: engine.render_fact(f, facts[f], locale) for f in spec["needs"]}
            text = spec[locale].format(product=name, currency=currency, **used)
            verdict = engine.gate.check(text, used, locale, name)
            assert verdict.passed, (theme, spec["id"], text, verdict.violations)
