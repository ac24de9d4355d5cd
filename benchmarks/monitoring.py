"""Benchmark a month's monitoring: feature PSI over the Phase-0 width, and the fairness report.

    python -m benchmarks.monitoring [--rows 5000] [--reps 3] [--out DIR]

Feature drift runs once per served month over every Phase-0 column, so its cost and what it can
see are both measured, on synthetic columns shaped like ours (1,211: 800 continuous, half of them
lognormal, 300 sparse 0/1 flags, 111 small counts), a reference and a current month of
``--rows`` customers each, with a shift planted in 24 columns (6 of each kind):

- **quantile bins** (ours, ``finai_models.monitoring.drift.psi_columns``): bins at the reference's
  deciles, each cut point its own bin;
- **equal-width bins** (the baseline, the original system's detector): 10 bins over the combined
  min-max range, shares floored at 1e-4, computed here with ``np.histogram``.

For each: seconds (best of ``--reps``, both in this process, taking turns), the ratio to the
baseline, how many planted columns reach warning (PSI >= 0.1) and critical (>= 0.25), how many
unplanted ones reach warning (false alarms), and the mean PSI of each kind's planted columns.
The fairness report (9 products x 2 attributes, confidence intervals) is timed on the same
customers. Results: ``benchmarks/results/monitoring.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.generator import machine_info
from finai_models.monitoring.drift import psi_columns
from finai_models.monitoring.fairness import fairness_report

REPO = Path(__file__).resolve().parents[1]
WARNING, CRITICAL = 0.1, 0.25
KINDS = {"normal": 0, "lognormal": 400, "flags 3% -> 9%": 800, "counts": 1100}     # first column of each kind
PRODUCTS = ("term_deposit", "savings_account", "e_account", "direct_debit", "loyalty_program", "credit_card",
            "pension_plan", "personal_loan", "investment_fund")
FAIRNESS = {"confidence": 0.95, "min_group": 30, "disparate_impact": [0.8, 1.25], "max_parity_difference": 0.1,
            "max_opportunity_difference": 0.1,
            "attributes": {"age_band": {"edges": [35, 50, 65], "labels": ["<35", "35-49", "50-64", "65+"],
                                        "reference": "35-49"}, "gender": {"reference": "M"}}}


def months(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reference and current month, and the mask of the 24 columns whose distribution was shifted."""
    rng = np.random.default_rng(seed)

    def draw(shift: np.ndarray) -> np.ndarray:
        normal = rng.normal(size=(rows, 400)) + 0.6 * shift[:400]
        heavy = rng.lognormal(mean=3.0 + 0.5 * shift[400:800], sigma=1.5, size=(rows, 400))
        flags = (rng.random((rows, 300)) < 0.03 + 0.06 * shift[800:1100]).astype(np.float64)
        counts = rng.poisson(2.0 + 1.5 * shift[1100:], size=(rows, 111)).astype(np.float64)
        return np.concatenate([normal, heavy, flags, counts], axis=1)

    planted = np.zeros(1211, bool)
    for start in (0, 400, 800, 1100):                          # 6 columns of each kind
        planted[start:start + 6] = True
    return draw(np.zeros(1211)), draw(planted.astype(float)), planted


def equal_width_psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, floor: float = 1e-4) -> np.ndarray:
    """The baseline: equal-width bins over each column's combined range."""
    out = np.zeros(reference.shape[1])
    for j in range(reference.shape[1]):
        lo = min(reference[:, j].min(), current[:, j].min())
        hi = max(reference[:, j].max(), current[:, j].max())
        if hi <= lo:
            continue
        r = np.maximum(np.histogram(reference[:, j], bins, (lo, hi))[0] / len(reference), floor)
        c = np.maximum(np.histogram(current[:, j], bins, (lo, hi))[0] / len(current), floor)
        out[j] = np.sum((c - r) * np.log(c / r))
    return out


def run(rows: int, reps: int) -> dict[str, Any]:
    reference, current, planted = months(rows)
    methods = {"quantile bins (ours)": lambda: psi_columns(reference, current),
               "equal-width bins (baseline)": lambda: equal_width_psi(reference, current)}
    seconds = {name: [] for name in methods}
    values = {}
    for _ in range(reps):                                       # take turns: load hits both alike
        for name, fn in methods.items():
            started = time.perf_counter()
            values[name] = fn()
            seconds[name].append(time.perf_counter() - started)
    base = min(seconds["equal-width bins (baseline)"])
    drift = [{"method": name, "seconds": min(seconds[name]), "x_baseline": min(seconds[name]) / base,
              "planted": int(planted.sum()), "planted_warning": int((values[name][planted] >= WARNING).sum()),
              "planted_critical": int((values[name][planted] >= CRITICAL).sum()),
              "false_warning": int((values[name][~planted] >= WARNING).sum()),
              "max_unplanted_psi": float(values[name][~planted].max()),
              "mean_planted_psi": {k: float(values[name][j:j + 6].mean()) for k, j in KINDS.items()}}
             for name in methods]

    rng = np.random.default_rng(1)
    age = rng.integers(19, 90, rows).astype(float)
    bands = np.asarray(FAIRNESS["attributes"]["age_band"]["labels"], object)[np.searchsorted([35, 50, 65], age,
                                                                                            "right")]
    attributes = {"age_band": bands, "gender": rng.choice(np.array(["F", "M"], object), rows)}
    recommended = {p: rng.random(rows) < 0.3 for p in PRODUCTS}
    qualified = {p: np.where(rng.random(rows) < 0.5, (rng.random(rows) < 0.2).astype(float), np.nan)
                 for p in PRODUCTS}
    started = time.perf_counter()
    report = fairness_report(recommended, qualified, attributes, FAIRNESS)
    fairness_s = time.perf_counter() - started
    rows_judged = sum(r["judged"] for a in report["attributes"].values() for r in a["rows"])
    return {"machine": machine_info(), "rows": rows, "columns": int(reference.shape[1]), "reps": reps,
            "drift": drift, "fairness": {"seconds": fairness_s, "rows_judged": rows_judged,
                                         "passed": report["passed"]}}


def markdown(result: dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"Monitoring benchmark, {m['timestamp']}: {m['cpu_count']} CPUs, Python {m['python']}; "
             f"{result['rows']:,} customers per month, {result['columns']:,} columns, best of {result['reps']}.",
             "", "| feature PSI | s | x baseline | planted: warning+ | planted: critical | unplanted: warning+ | "
             + " | ".join(f"mean PSI, {k}" for k in KINDS) + " |", "|---|" + "---:|" * (5 + len(KINDS))]
    for d in result["drift"]:
        kinds = " | ".join(f"{d['mean_planted_psi'][k]:.3f}" for k in KINDS)
        lines.append(f"| {d['method']} | {d['seconds']:.3f} | {d['x_baseline']:.2f} | {d['planted_warning']} of "
                     f"{d['planted']} | {d['planted_critical']} | {d['false_warning']} | {kinds} |")
    f = result["fairness"]
    lines += ["", f"Fairness report (9 products x age band and gender, intervals): {f['seconds'] * 1000:.1f} ms, "
                  f"{f['rows_judged']} comparisons judged, passed: {f['passed']} (recommendations independent "
                  "of the groups)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    args = parser.parse_args(argv)
    result = run(args.rows, args.reps)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monitoring.json").write_text(json.dumps(result, indent=1))
    table = markdown(result)
    (args.out / "monitoring.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
