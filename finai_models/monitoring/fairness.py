"""Fairness of the served recommendations by protected attribute (age band, gender).

"Recommended" = the product is in the customer's top-k list. Each group g is compared with the
attribute's reference group r, product by product, on

- disparate impact DI = rate_g / rate_r (Katz log risk-ratio interval),
- statistical parity difference SPD = rate_g - rate_r (Wald interval),
- equal opportunity difference EOD = TPR_g - TPR_r, the rates among *qualified* customers only
  (those who went on to take the product), so a gap explained by need is not counted against the
  model. Computed only when both groups have ``min_group`` qualified customers.

A metric is a violation only when its whole confidence interval lies outside the allowed range:
a group of 130 customers must not fail on sampling noise, while a rule that excludes a band
(rate 0) fails at once. Groups under ``min_group`` customers, and the "unknown" group, are listed
but not judged. Every value in the report is plain Python, ready for JSON.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from finai_models.monitoring.config import UNKNOWN

METRICS = ("disparate_impact", "parity_difference", "opportunity_difference")


def age_band(age: np.ndarray, edges: list[int], labels: list[str]) -> np.ndarray:
    """The band label of each age (``edges`` are the first ages of bands 2..); a missing age is "unknown"."""
    if len(labels) != len(edges) + 1:
        raise ValueError(f"{len(edges)} edges need {len(edges) + 1} labels, got {len(labels)}")
    age = np.asarray(age, dtype=np.float64)
    bands = np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(edges, dtype=np.float64), age, "right")]
    bands[~np.isfinite(age)] = UNKNOWN
    return bands


def _wald(x1: int, n1: int, x2: int, n2: int, z: float) -> tuple[float, list[float]]:
    """Difference of two proportions and its Wald interval."""
    p1, p2 = x1 / n1, x2 / n2
    half = z * math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return p1 - p2, [p1 - p2 - half, p1 - p2 + half]


def _ratio(x1: int, n1: int, x2: int, n2: int, z: float) -> tuple[float, list[float]]:
    """Ratio of two proportions and its Katz interval; a zero count gets 0.5 so the interval stays finite.

    With the reference at zero the ratio uses the corrected reference rate too (finite, and large).
    When nobody in either group got the product the ratio is 1.0 (neutral) and its interval, of two
    half counts, is centred on 1, so it can never lie outside a range that contains 1.
    """
    c1, c2 = max(x1, 0.5), max(x2, 0.5)
    p1, p2 = c1 / n1, c2 / n2
    se = math.sqrt((1 - p1) / c1 + (1 - p2) / c2)     # (1 - p) / (n p) = (1 - p) / count
    point, centre = (1.0, 0.0) if x1 == x2 == 0 else ((x1 / n1) / p2, math.log(p1 / p2))
    return point, [math.exp(centre - z * se), math.exp(centre + z * se)]


def _ci(lo: float, hi: float) -> str:
    return f"{lo:.2f} to {hi:.2f}" if lo < 0 or hi < 0 else f"{lo:.2f}-{hi:.2f}"


def _message(row: dict, reference: str, metric: str, cfg: dict) -> str:
    """One violation as a sentence naming product, groups, estimate, interval and the bound it breaks."""
    level = f"{cfg['confidence'] * 100:g}%"
    head = f"{row['product']}: {row['group']} vs {reference}"
    if metric == "disparate_impact":
        lo, hi = cfg["disparate_impact"]
        return (f"{head}: disparate impact {row['disparate_impact']:.2f} ({level} CI {_ci(*row['di_ci'])}) "
                f"outside {lo:.2f}-{hi:.2f}")
    if metric == "parity_difference":
        value, ci, bound, name = row["parity_difference"], row["spd_ci"], cfg["max_parity_difference"], "parity"
    else:
        value, ci, bound = row["opportunity_difference"], row["eod_ci"], cfg["max_opportunity_difference"]
        name = "equal opportunity"
    return f"{head}: {name} difference {value:+.2f} ({level} CI {_ci(*ci)}) beyond ±{bound:.2f}"


def _row(product: str, group: str, ref: str, rec: np.ndarray, qual: np.ndarray | None, in_g: np.ndarray,
         in_r: np.ndarray, cfg: dict, z: float) -> tuple[dict, str | None]:
    """The comparison of one group with the reference on one product, and a note when EOD is unobservable."""
    n1, n2 = int(in_g.sum()), int(in_r.sum())
    x1, x2 = int(rec[in_g].sum()), int(rec[in_r].sum())
    di, di_ci = _ratio(x1, n1, x2, n2, z)
    spd, spd_ci = _wald(x1, n1, x2, n2, z)
    judged = group != UNKNOWN and min(n1, n2) >= cfg["min_group"]
    q1 = q2 = 0
    eod = eod_ci = note = None
    if qual is None:
        note = f"{product}: equal opportunity not observable (no qualification data)"
    else:
        ok1, ok2 = in_g & (qual == 1), in_r & (qual == 1)            # NaN == 1 is False: unobserved drop out
        q1, q2 = int(ok1.sum()), int(ok2.sum())
        if min(q1, q2) >= cfg["min_group"]:
            eod, eod_ci = _wald(int(rec[ok1].sum()), q1, int(rec[ok2].sum()), q2, z)
        elif judged:
            note = (f"{product}: {group} vs {ref}: equal opportunity not observable "
                    f"(qualified {q1} vs {q2}; needs {cfg['min_group']} each)")
    lo, hi = cfg["disparate_impact"]
    breaks = {"disparate_impact": di_ci[1] < lo or di_ci[0] > hi,
              "parity_difference": _beyond(spd_ci, cfg["max_parity_difference"]),
              "opportunity_difference": eod_ci is not None and _beyond(eod_ci, cfg["max_opportunity_difference"])}
    row = {"product": product, "group": group, "n": n1, "n_reference": n2, "rate": x1 / n1, "rate_reference": x2 / n2,
           "disparate_impact": di, "di_ci": di_ci, "parity_difference": spd, "spd_ci": spd_ci,
           "qualified": q1, "qualified_reference": q2, "opportunity_difference": eod, "eod_ci": eod_ci,
           "judged": judged, "violations": [m for m in METRICS if judged and breaks[m]]}
    return row, note


def _beyond(ci: list[float], bound: float) -> bool:
    return ci[0] > bound or ci[1] < -bound


def _attribute(name: str, values: np.ndarray, recommended: dict[str, np.ndarray], qualified: dict[str, np.ndarray],
               cfg: dict, z: float) -> dict:
    spec = cfg["attributes"].get(name)
    if spec is None:
        raise ValueError(f"attribute {name!r} has no reference group in the fairness config")
    ref = spec["reference"]
    values = np.asarray(values, dtype=str)
    labels, counts = np.unique(values, return_counts=True)
    order = {label: i for i, label in enumerate(spec.get("labels", []))}      # configured bands in their order

    def rank(label: str) -> tuple[int, bool, str]:
        return order.get(label, len(order)), label == UNKNOWN, label

    count_of = dict(zip(labels.tolist(), counts.tolist(), strict=True))
    groups = {label: int(count_of[label]) for label in sorted(count_of, key=rank)}
    out = {"reference": ref, "groups": groups, "rows": [], "violations": [], "not_observable": [], "passed": True}
    n_ref = groups.get(ref, 0)
    if n_ref < cfg["min_group"]:
        out["not_observable"].append(f"reference group {ref}: {n_ref} customers (fewer than {cfg['min_group']}): "
                                     "nothing judged")
        if n_ref == 0:
            return out
    for label, count in groups.items():
        if label == UNKNOWN:
            out["not_observable"].append(f"{UNKNOWN}: {count} customers without a known {name}: never judged")
        elif label != ref and count < cfg["min_group"]:
            out["not_observable"].append(f"group {label}: {count} customers (fewer than {cfg['min_group']}): "
                                         "reported, not judged")
    masks = {label: values == label for label in groups}
    for product, rec in recommended.items():
        rec = np.asarray(rec, dtype=bool)
        qual = None if product not in qualified else np.asarray(qualified[product], dtype=np.float64)
        for group in (g for g in groups if g != ref):
            row, note = _row(product, group, ref, rec, qual, masks[group], masks[ref], cfg, z)
            out["rows"].append(row)
            out["violations"] += [_message(row, ref, m, cfg) for m in row["violations"]]
            if note and note not in out["not_observable"]:
                out["not_observable"].append(note)
    out["passed"] = not out["violations"]
    return out


def fairness_report(recommended: dict[str, np.ndarray], qualified: dict[str, np.ndarray],
                    attributes: dict[str, np.ndarray], cfg: dict) -> dict:
    """Every product compared across the groups of every attribute; ``cfg`` is the ``fairness`` block.

    ``recommended[p]``: bool (n,), p in the customer's top-k. ``qualified[p]``: 1/0/NaN (n,), whether
    the customer went on to take p (NaN: not observable); a product may be absent. ``attributes[a]``:
    the group label of each customer.
    """
    sizes = {len(v) for v in (*recommended.values(), *qualified.values(), *attributes.values())}
    if len(sizes) > 1:
        raise ValueError(f"fairness_report needs arrays of one length, got lengths {sorted(sizes)}")
    z = NormalDist().inv_cdf(0.5 + cfg["confidence"] / 2)
    report = {name: _attribute(name, values, recommended, qualified, cfg, z) for name, values in attributes.items()}
    return {
        "customers": sizes.pop() if sizes else 0,
        "thresholds": {"disparate_impact": list(cfg["disparate_impact"]),
                       "max_parity_difference": cfg["max_parity_difference"],
                       "max_opportunity_difference": cfg["max_opportunity_difference"],
                       "min_group": cfg["min_group"], "confidence": cfg["confidence"]},
        "attributes": report,
        "passed": all(a["passed"] for a in report.values()),
    }


def attribute_verdict(report: dict, attribute: str) -> tuple[bool, str]:
    """(passed, one line) for an asset check's description: the violations, or what was compared."""
    part = report["attributes"][attribute]
    if part["violations"]:
        count = len(part["violations"])
        more = f"; and {count - 3} more" if count > 3 else ""
        return False, f"{attribute}: {count} violation{'s' * (count > 1)}: {'; '.join(part['violations'][:3])}{more}"
    groups = [g for g in part["groups"] if g != UNKNOWN]
    products = list(dict.fromkeys(r["product"] for r in part["rows"]))
    observable = {r["product"] for r in part["rows"] if r["judged"] and r["opportunity_difference"] is not None}
    unjudged = sorted({r["group"] for r in part["rows"] if not r["judged"] and r["group"] != UNKNOWN})
    tail = f"; not judged (too few customers): {', '.join(unjudged)}" if unjudged else ""
    if part["groups"].get(part["reference"], 0) < report["thresholds"]["min_group"]:
        tail = f"; reference {part['reference']} too small, nothing judged"
    return True, (f"{attribute}: {len(groups)} groups, {len(products)} products, no violation "
                  f"(equal opportunity observable for {len(observable)} products){tail}")
