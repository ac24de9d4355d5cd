import json
import math

import numpy as np
import pytest

from finai_models.monitoring.fairness import age_band, attribute_verdict, fairness_report

EDGES, LABELS = [35, 50, 65], ["<35", "35-49", "50-64", "65+"]
CFG = {"confidence": 0.95, "min_group": 30, "disparate_impact": [0.8, 1.25], "max_parity_difference": 0.1,
       "max_opportunity_difference": 0.1,
       "attributes": {"age_band": {"edges": EDGES, "labels": LABELS, "reference": "35-49"},
                      "gender": {"reference": "M"}}}
PRODUCTS = ["term_deposit", "savings_account", "e_account", "direct_debit", "loyalty_program", "credit_card",
            "pension_plan", "personal_loan", "investment_fund"]
Z95 = 1.959963984540054


def assert_plain(value) -> None:
    """Only the types JSON has (numpy scalars subclass float, so ``type(...) is`` it is)."""
    if isinstance(value, dict):
        assert all(type(k) is str for k in value)
        for v in value.values():
            assert_plain(v)
    elif isinstance(value, list):
        for v in value:
            assert_plain(v)
    else:
        assert value is None or type(value) in (str, int, float, bool), (value, type(value))


def population(n: int = 3000, seed: int = 0) -> tuple[dict, dict, dict]:
    """Recommendations and qualification drawn independently of age and gender."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 90, n)
    age[:25] = np.nan
    attributes = {"age_band": age_band(age, EDGES, LABELS), "gender": rng.choice(["F", "M"], n)}
    recommended = {p: rng.random(n) < rate for p, rate in zip(PRODUCTS, np.linspace(0.1, 0.5, 9), strict=True)}
    qualified = {}
    for p in PRODUCTS[:5]:
        q = (rng.random(n) < 0.3).astype(float)
        q[rng.random(n) < 0.2] = np.nan
        qualified[p] = q
    return recommended, qualified, attributes


def rows(report: dict, attribute: str, product: str) -> dict[str, dict]:
    return {r["group"]: r for r in report["attributes"][attribute]["rows"] if r["product"] == product}


def test_age_band():
    age = np.array([18, 34.9, 35, 49.5, 50, 64, 65, 101, np.nan])
    assert age_band(age, EDGES, LABELS).tolist() == ["<35", "<35", "35-49", "35-49", "50-64", "50-64", "65+", "65+",
                                                      "unknown"]
    with pytest.raises(ValueError):
        age_band(age, EDGES, LABELS[:3])


def test_recommendations_independent_of_groups_pass():
    recommended, qualified, attributes = population()
    report = fairness_report(recommended, qualified, attributes, CFG)
    assert report["passed"] and report["customers"] == 3000
    age = report["attributes"]["age_band"]
    assert list(age["groups"]) == LABELS + ["unknown"] and age["groups"]["unknown"] == 25
    assert len(age["rows"]) == 9 * 4                      # 3 bands and "unknown" against the reference
    assert all(r["judged"] == (r["group"] != "unknown") for r in age["rows"])
    observable = {r["product"] for r in age["rows"] if r["judged"] and r["opportunity_difference"] is not None}
    assert observable == set(PRODUCTS[:5])
    assert any("pension_plan: equal opportunity not observable" in note for note in age["not_observable"])
    passed, line = attribute_verdict(report, "age_band")
    assert passed and line == ("age_band: 4 groups, 9 products, no violation "
                               "(equal opportunity observable for 5 products)")
    assert attribute_verdict(report, "gender")[0]
    assert_plain(report)
    json.dumps(report)


def test_a_product_never_recommended_to_the_old_fails_on_that_band_alone():
    recommended, qualified, attributes = population()
    recommended["pension_plan"] = recommended["pension_plan"] & (attributes["age_band"] != "65+")
    report = fairness_report(recommended, qualified, attributes, CFG)
    old = rows(report, "age_band", "pension_plan")["65+"]
    assert old["rate"] == 0.0 and old["disparate_impact"] == 0.0
    assert old["violations"] == ["disparate_impact", "parity_difference"]
    assert all(not r["violations"] for r in report["attributes"]["age_band"]["rows"] if r is not old)
    assert report["attributes"]["gender"]["passed"] and not report["attributes"]["age_band"]["passed"]
    assert not report["passed"]
    messages = report["attributes"]["age_band"]["violations"]
    assert len(messages) == 2 and all("pension_plan: 65+ vs 35-49" in m for m in messages)
    assert messages[0].startswith("pension_plan: 65+ vs 35-49: disparate impact 0.00 (95% CI 0.00-0.0")
    assert messages[0].endswith("outside 0.80-1.25")
    passed, line = attribute_verdict(report, "age_band")
    assert not passed and line.startswith("age_band: 2 violations: pension_plan: 65+ vs 35-49: disparate impact")


def test_katz_interval_by_hand_with_a_zero_count():
    # 0 of 100 vs 50 of 100: the zero count becomes 0.5, so p1 = 0.005, p2 = 0.5 and
    # se = sqrt(0.995 / 0.5 + 0.5 / 50) = sqrt(2); the interval is exp(ln(0.01) +- z sqrt(2)).
    labels = np.array(["F"] * 100 + ["M"] * 100)
    rec = np.r_[np.zeros(100, bool), np.arange(100) < 50]
    row = rows(fairness_report({"p": rec}, {}, {"gender": labels}, CFG), "gender", "p")["F"]
    centre, se = math.log(0.01), math.sqrt(2.0)
    assert row["disparate_impact"] == 0.0
    assert row["di_ci"] == pytest.approx([math.exp(centre - Z95 * se), math.exp(centre + Z95 * se)])
    half = Z95 * math.sqrt(0.25 / 100)
    assert row["spd_ci"] == pytest.approx([-0.5 - half, -0.5 + half])


def test_a_group_smaller_than_min_group_is_listed_not_judged():
    labels = np.array(["F"] * 20 + ["M"] * 500)
    rec = np.r_[np.zeros(20, bool), np.ones(500, bool)]                # the 20 never get it
    report = fairness_report({"p": rec}, {}, {"gender": labels}, CFG)
    row = rows(report, "gender", "p")["F"]
    assert row["n"] == 20 and not row["judged"] and row["violations"] == []
    assert report["passed"]
    assert any("group F: 20 customers" in note for note in report["attributes"]["gender"]["not_observable"])
    assert "not judged (too few customers): F" in attribute_verdict(report, "gender")[1]
    report = fairness_report({"p": rec}, {}, {"gender": labels}, {**CFG, "min_group": 20})
    assert not report["passed"]                                         # the same data, judged


def test_recommending_to_qualified_men_only_breaks_equal_opportunity():
    # Both genders get the product at the same rate (0.2), so parity holds; but among the qualified,
    # every man gets it and a woman only by chance.
    rng = np.random.default_rng(1)
    n = 4000
    gender = np.repeat(["F", "M"], n // 2)
    qualified = (rng.random(n) < 0.2).astype(float)
    recommended = np.where(gender == "M", qualified == 1, rng.random(n) < qualified[gender == "M"].mean())
    report = fairness_report({"p": recommended}, {"p": qualified}, {"gender": gender}, CFG)
    row = rows(report, "gender", "p")["F"]
    assert row["violations"] == ["opportunity_difference"]
    assert row["opportunity_difference"] < -0.5 and row["eod_ci"][1] < -0.1
    assert "p: F vs M: equal opportunity difference -0." in report["attributes"]["gender"]["violations"][0]


def test_unobserved_qualification_is_excluded():
    # 100 qualified per gender, all recommended; 500 women unobservable (NaN) and never recommended.
    # Counted as qualified they would drag the women's rate among the qualified to 1/6.
    gender = np.array(["F"] * 600 + ["M"] * 100)
    qualified = np.r_[np.ones(100), np.full(500, np.nan), np.ones(100)]
    recommended = np.r_[np.ones(100, bool), np.zeros(500, bool), np.ones(100, bool)]
    row = rows(fairness_report({"p": recommended}, {"p": qualified}, {"gender": gender}, CFG), "gender", "p")["F"]
    assert (row["qualified"], row["qualified_reference"]) == (100, 100)
    assert row["opportunity_difference"] == 0.0
    assert "opportunity_difference" not in row["violations"]


def test_too_few_qualified_makes_equal_opportunity_unobservable():
    gender = np.array(["F"] * 300 + ["M"] * 300)
    qualified = np.r_[np.ones(10), np.zeros(290), np.ones(100), np.zeros(200)]
    recommended = np.zeros(600, bool)
    report = fairness_report({"p": recommended}, {"p": qualified}, {"gender": gender}, CFG)
    row = rows(report, "gender", "p")["F"]
    assert row["opportunity_difference"] is None and row["eod_ci"] is None
    assert any("qualified 10 vs 100" in note for note in report["attributes"]["gender"]["not_observable"])


def test_a_product_nobody_gets_is_neutral():
    gender = np.array(["F"] * 300 + ["M"] * 700)
    report = fairness_report({"p": np.zeros(1000, bool)}, {}, {"gender": gender}, CFG)
    row = rows(report, "gender", "p")["F"]
    assert row["disparate_impact"] == 1.0 and row["parity_difference"] == 0.0
    assert row["di_ci"][0] < 1.0 < row["di_ci"][1]
    assert row["violations"] == [] and report["passed"]


@pytest.mark.parametrize(("n", "violates"), [(130, False), (20_000, True)])
def test_interval_width_shrinks_with_group_size(n, violates):
    # A true parity difference of 0.12 (rates 0.42 vs 0.30), a little above the 0.1 bound: with 130
    # customers a group this far off is within noise of the bound, with 20,000 it is not.
    hits = round(0.42 * n), round(0.30 * n)
    gender = np.repeat(["F", "M"], n)
    recommended = np.r_[np.arange(n) < hits[0], np.arange(n) < hits[1]]
    row = rows(fairness_report({"p": recommended}, {}, {"gender": gender}, CFG), "gender", "p")["F"]
    p1, p2 = hits[0] / n, hits[1] / n
    half = Z95 * math.sqrt(p1 * (1 - p1) / n + p2 * (1 - p2) / n)
    assert row["parity_difference"] == pytest.approx(p1 - p2)
    assert row["spd_ci"] == pytest.approx([p1 - p2 - half, p1 - p2 + half])
    assert ("parity_difference" in row["violations"]) is violates
