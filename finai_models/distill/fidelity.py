"""Teacher-student fidelity on held-out rows: the pure functions behind routing and the blocking check.

Tier 1 blocks a student: binary AUC gap and the calibrated student's ECE against the labels,
multiclass macro-F1 gap, regression MAE and RMSE gaps. Gaps are one-sided (teacher minus student
for AUC/F1, relative excess of the student's error for MAE/RMSE): a student that is *better* on
held-out labels than its teacher is no fidelity failure, and DIRECT-routed students, trained on
hard labels because the teacher was weak, are held to the same floor. Tier 2 (agreement, JSD,
rank correlation, quartile agreement) measures imitation and is recorded, not blocking. Both
training (routing) and the asset check call these; nothing here knows about Dagster or files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from finai_models import metrics as M
from finai_models.teacher.evaluate import task_metrics
from finai_models.teacher.tasks import TaskSpec
from finai_serving.student import sigmoid, softmax

ROUTES = ("distill", "direct", "rule")
TIER1_METRICS = {"binary": ("teacher_auc", "student_auc", "auc_gap", "student_ece"),
                 "multiclass": ("teacher_macro_f1", "student_macro_f1", "macro_f1_gap"),
                 "regression": ("teacher_mae", "student_mae", "mae_gap", "teacher_rmse", "student_rmse", "rmse_gap")}


def teacher_scores(task: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Teacher logits -> the same kind of score a student emits (probabilities or values)."""
    if task.kind == "binary":
        return sigmoid(logits)
    return softmax(logits) if task.kind == "multiclass" else logits


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-width probability bins, weighted by bin size."""
    edges = np.minimum((p * bins).astype(np.int64), bins - 1)
    count = np.bincount(edges, minlength=bins)
    gap = np.abs(np.bincount(edges, weights=y, minlength=bins) - np.bincount(edges, weights=p, minlength=bins))
    return float(gap.sum() / max(count.sum(), 1))


def ece_noise(p: np.ndarray, bins: int = 10) -> float:
    """The ECE a perfectly calibrated model would still show on these rows, from sampling alone.

    In a bin of n rows whose labels are Bernoulli(p_i), |mean(y) - mean(p)| has expectation about
    sqrt(2/pi) * sqrt(sum p_i (1 - p_i)) / n; summed over bins with their weights. On a few hundred
    test rows this is itself about 0.05, so a fixed ECE bound on small months fails good students
    on noise; the gate compares the ECE in excess of it.
    """
    edges = np.minimum((p * bins).astype(np.int64), bins - 1)
    variance = np.bincount(edges, weights=p * (1 - p), minlength=bins)
    return float(np.sqrt(2 / np.pi) * np.sqrt(variance).sum() / max(len(p), 1))


def jsd(p: np.ndarray, q: np.ndarray) -> float:
    """Mean Jensen-Shannon divergence (base 2, in [0, 1]) between row distributions [n, K]."""
    p, q = np.clip(p, 1e-12, 1), np.clip(q, 1e-12, 1)
    m = 0.5 * (p + q)
    kl = lambda a, b: (a * np.log2(a / b)).sum(axis=1)  # noqa: E731
    return float(np.mean(0.5 * kl(p, m) + 0.5 * kl(q, m)))


def rank_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman correlation (Pearson on average ranks)."""
    ra, rb = M.ranks(a), M.ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def _two_class(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p], axis=1)


@dataclass
class Fidelity:
    task: str
    route: str
    passed: bool
    metrics: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)            # tier 1: blocking
    informational: list[str] = field(default_factory=list)       # tier 2: recorded

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fidelity(task: TaskSpec, route: str, y: np.ndarray, teacher: np.ndarray | None, student: np.ndarray | None,
             thresholds: Mapping[str, Any]) -> Fidelity:
    """Compare teacher and student scores (probabilities or values, as ``teacher_scores``) with the labels."""
    if route == "rule":
        return Fidelity(task.name, route, True, {}, [], ["no student: served by the rule engine"])
    tier1, tier2 = thresholds["tier1"][task.kind], thresholds["tier2"][task.kind]
    t_m, s_m = task_metrics(task, y, teacher), task_metrics(task, y, student)
    seen = ~np.isnan(y)
    out: dict[str, float] = {"rows": float(seen.sum())}
    fail: list[str] = []
    info: list[str] = []

    def check(ok: bool, what: str, into: list[str]) -> None:
        if not ok:
            into.append(what)

    if task.kind == "binary":
        gap = t_m["auc"] - s_m["auc"]
        calib = ece(y[seen], student[seen], thresholds.get("ece_bins", 10))
        out.update(teacher_auc=t_m["auc"], student_auc=s_m["auc"], auc_gap=gap, student_ece=calib,
                   teacher_ece=ece(y[seen], teacher[seen], thresholds.get("ece_bins", 10)),
                   agreement=float(((teacher >= 0.5) == (student >= 0.5)).mean()),
                   jsd=jsd(_two_class(teacher), _two_class(student)), rank_corr=rank_corr(teacher, student))
        check(gap <= tier1["max_auc_gap"], f"AUC gap {gap:.4f} > {tier1['max_auc_gap']}", fail)
        noise = ece_noise(student[seen], thresholds.get("ece_bins", 10))
        out["student_ece_noise"] = noise
        check(calib - noise <= tier1["max_ece"],
              f"ECE {calib:.4f} > {tier1['max_ece']} + {noise:.4f} expected from {int(seen.sum())} rows alone", fail)
        check(out["agreement"] >= tier2["min_agreement"], f"agreement {out['agreement']:.3f}", info)
        check(out["jsd"] <= tier2["max_jsd"], f"JSD {out['jsd']:.4f}", info)
        check(out["rank_corr"] >= tier2["min_rank_corr"], f"rank correlation {out['rank_corr']:.3f}", info)
    elif task.kind == "multiclass":
        gap = t_m["macro_f1"] - s_m["macro_f1"]
        out.update(teacher_macro_f1=t_m["macro_f1"], student_macro_f1=s_m["macro_f1"], macro_f1_gap=gap,
                   agreement=float((teacher.argmax(1) == student.argmax(1)).mean()), jsd=jsd(teacher, student))
        check(gap <= tier1["max_macro_f1_gap"], f"macro-F1 gap {gap:.4f} > {tier1['max_macro_f1_gap']}", fail)
        check(out["agreement"] >= tier2["min_agreement"], f"agreement {out['agreement']:.3f}", info)
        check(out["jsd"] <= tier2["max_jsd"], f"JSD {out['jsd']:.4f}", info)
    else:
        mae_gap = (s_m["mae"] - t_m["mae"]) / max(t_m["mae"], 1e-12)
        rmse_gap = (s_m["rmse"] - t_m["rmse"]) / max(t_m["rmse"], 1e-12)
        edges = np.quantile(teacher, [0.25, 0.5, 0.75])
        out.update(teacher_mae=t_m["mae"], student_mae=s_m["mae"], mae_gap=mae_gap, teacher_rmse=t_m["rmse"],
                   student_rmse=s_m["rmse"], rmse_gap=rmse_gap, rank_corr=rank_corr(teacher, student),
                   quartile_agreement=float((np.digitize(teacher, edges) == np.digitize(student, edges)).mean()))
        check(mae_gap <= tier1["max_mae_gap"], f"MAE gap {mae_gap:+.1%} > {tier1['max_mae_gap']:.0%}", fail)
        check(rmse_gap <= tier1["max_rmse_gap"], f"RMSE gap {rmse_gap:+.1%} > {tier1['max_rmse_gap']:.0%}", fail)
        check(out["rank_corr"] >= tier2["min_rank_corr"], f"rank correlation {out['rank_corr']:.3f}", info)
        check(out["quartile_agreement"] >= tier2["min_quartile_agreement"],
              f"quartile agreement {out['quartile_agreement']:.3f}", info)
    bad = [k for k in TIER1_METRICS[task.kind] if not np.isfinite(out[k])]
    if bad:   # tier 2 may be undefined (the rank correlation of a constant student); tier 1 may not
        fail.append(f"tier-1 metrics not computable on the held-out rows: {bad}")
    return Fidelity(task.name, route, not fail, {k: round(float(v), 6) for k, v in out.items()}, fail, info)


def route(task: TaskSpec, y: np.ndarray, teacher: np.ndarray, rules: Mapping[str, Mapping[str, float]]
          ) -> dict[str, Any]:
    """DISTILL / DIRECT / RULE from the teacher's quality on the validation months, with the reason.

    A binary teacher must clear the rule floor by ``rule_margin_se`` standard errors of its AUC
    (Hanley-McNeil): on a small month 0.52 on 100 positives is noise, and a student distilled from
    noise fails its gate at random."""
    m = task_metrics(task, y, teacher)
    r = rules[task.kind]
    margin, detail = 0.0, ""
    if task.kind == "binary":
        value, metric, hi, lo = m.get("auc", float("nan")), "auc", r["distill_auc"], r["rule_auc"]
        seen = ~np.isnan(y)
        positives = int(y[seen].sum())
        se = M.auc_standard_error(value, positives, int(seen.sum()) - positives)
        margin = r["rule_margin_se"] * se if np.isfinite(se) else 0.0
        detail = f" ± {se:.4f} (SE, {positives:,} positives)"
    elif task.kind == "multiclass":
        chance = 1.0 / task.classes
        value, metric = m.get("macro_f1", float("nan")), "macro_f1"
        hi, lo = r["distill_f1_per_chance"] * chance, r["rule_f1_per_chance"] * chance
    else:
        value, metric, hi, lo = m.get("r2", float("nan")), "r2", r["distill_r2"], r["rule_r2"]
    floor = lo + margin
    decision = "rule" if not value > floor else "distill" if value > hi else "direct"   # NaN: rule
    margin_text = f" + {margin:.4f} ({r['rule_margin_se']:g} SE)" if margin else ""
    verdict = {"distill": f"> {hi:.4f}", "rule": f"<= {lo:.4f}{margin_text}",
               "direct": f"in ({lo:.4f}{margin_text}, {hi:.4f}]"}[decision]
    return {"route": decision, "metric": metric, "teacher_value": float(value), "distill_above": hi,
            "rule_at_or_below": floor, "reason": f"teacher {metric} {value:.4f}{detail} on the validation months "
                                                 f"{verdict}"}
