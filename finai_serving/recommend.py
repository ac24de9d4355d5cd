"""From 13 task scores to ranked, eligible products: scoring, the constraint engine, the rule fallback.

Scores of different tasks live on different scales (a 2% acquisition probability, a 0-24 count,
one class of a 50-way softmax), so every signal is read as the customer's percentile among the
month's customers for that output (``population.json``), and a product's score is the weighted
mean of its signals (``serving.yaml``). A task without a model (routed to rules) or switched off
reads 0.5, the population's middle: it neither pushes nor blocks. The constraint engine is
fail-closed: a product that needs a suitability assessment is withheld when the customer's risk
grade, age or income is unknown.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

NEUTRAL = 0.5
OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt, "==": operator.eq}


@dataclass
class Profile:
    """What the constraint engine knows about a customer (batch or request; the request wins)."""

    age: int | None = None
    income: float | None = None
    risk_grade: int | None = None
    tenure_months: int | None = None
    messages_7d: int = 0
    owned: set[str] = field(default_factory=set)


@dataclass
class Candidate:
    product: Mapping[str, Any]
    score: float
    components: dict[str, float]
    rejected: str | None = None

    @property
    def id(self) -> str:
        return self.product["id"]


def signal_key(signal: Mapping[str, Any]) -> str:
    return f"{signal['task']}[{signal['class']}]" if "class" in signal else signal["task"]


def score_products(catalogue: Iterable[Mapping[str, Any]], percentiles: Mapping[str, float]) -> list[Candidate]:
    """Weighted mean of each product's signal percentiles (``percentiles`` keyed by ``signal_key``)."""
    out = []
    for product in catalogue:
        parts, total = {}, 0.0
        for signal in product["signals"]:
            q = percentiles.get(signal_key(signal), NEUTRAL)
            q = 1.0 - q if signal.get("direction", 1) == -1 else q
            parts[signal_key(signal)] = round(q, 4)
            total += float(signal["weight"]) * q
        out.append(Candidate(product, total / sum(float(s["weight"]) for s in product["signals"]), parts))
    return out


def rule_scores(catalogue: Iterable[Mapping[str, Any]], popularity: Mapping[str, float], facts: Mapping[str, Any],
                boosts: Iterable[Mapping[str, Any]]) -> list[Candidate]:
    """The kill switch's fallback: each product's share of holders, nudged by the configured fact rules."""
    extra: dict[str, float] = {}
    fired: dict[str, list[str]] = {}
    for b in boosts:
        value = facts.get(b["fact"])
        if isinstance(value, int | float) and OPS[b["op"]](value, b["value"]):
            extra[b["product"]] = extra.get(b["product"], 0.0) + float(b["boost"])
            fired.setdefault(b["product"], []).append(f"{b['fact']} {b['op']} {b['value']}")
    out = []
    for p in catalogue:
        base = float(popularity.get(p["id"], 0.0))
        components = {"popularity": round(base, 4), **{f"rule: {r}": 1.0 for r in fired.get(p["id"], [])}}
        out.append(Candidate(p, base + extra.get(p["id"], 0.0), components))
    return out


def check(candidate: Candidate, profile: Profile, rules: Mapping[str, Any]) -> str | None:
    """The first constraint a product fails for this customer, or None (owned, eligibility, suitability)."""
    p = candidate.product
    if candidate.score < float(rules["min_score"]):
        return "score below the minimum"
    if profile.owned.intersection(p.get("owned_if", [])):
        return "already held"
    for key, have, what in (("min_age", profile.age, "age"), ("min_income", profile.income, "income"),
                            ("min_tenure_months", profile.tenure_months, "tenure")):
        if key in p and (have is None or have < p[key]):
            return f"eligibility: {what} unknown" if have is None else f"eligibility: {what} below {p[key]}"
    suit = rules["suitability"]
    risk = int(p["risk"])
    if risk <= int(suit["assessment_free_max_risk"]):
        return None
    missing = [n for n, v in (("risk grade", profile.risk_grade), ("age", profile.age), ("income", profile.income))
               if v is None]
    if missing:
        return f"suitability: no {', '.join(missing)} on file (fail-closed)"
    limit = int(profile.risk_grade)
    if profile.age >= int(suit["senior_age"]):
        limit = min(limit, int(suit["senior_max_risk"]))
    if profile.income < float(suit["low_income"]):
        limit = min(limit, int(suit["low_income_max_risk"]))
    return f"suitability: product risk {risk} above the customer's limit {limit}" if risk > limit else None


def select(candidates: list[Candidate], profile: Profile, rules: Mapping[str, Any], k: int
           ) -> tuple[list[Candidate], list[Candidate], str | None]:
    """(top-k eligible by score, rejected with reasons, customer-level block or None)."""
    if profile.messages_7d >= int(rules["fatigue"]["max_messages_7d"]):
        return [], candidates, f"contact fatigue: {profile.messages_7d} messages in 7 days"
    for c in candidates:
        c.rejected = check(c, profile, rules)
    eligible = sorted((c for c in candidates if c.rejected is None), key=lambda c: (-c.score, c.id))
    return eligible[:k], [c for c in candidates if c.rejected is not None], None
