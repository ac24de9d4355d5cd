"""Per-task comparison of models on the held-out months, with intervals a bank can trust.

One task is judged by its primary metric (AUC for binary, macro-F1 for multiclass, MAE for
regression). Every model's score comes with a 95% interval from a hierarchical bootstrap: each
resample draws customers of the test months with replacement (a customer seen in two test months
moves as one, so the interval is not too narrow) and, for a model trained with several seeds, one of
its seeds at random, so the interval covers both "other customers" and "another training run". The
paired difference of two models uses the same resamples for both, which cancels most of the
customer noise. A model *wins* a task only where that paired interval lies wholly above zero.

Resamples are Poisson weights per customer (each customer counted k ~ Poisson(1) times), so every
metric is a weighted sum over rows computed in O(n) from a precomputed order: a thousand resamples
of a 100k-row AUC take about a second.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from finai_models.errors import DataError
from finai_models.teacher.tasks import TaskSpec

METRIC = {"binary": "auc", "multiclass": "macro_f1", "regression": "mae"}
HIGHER_IS_BETTER = {"auc": True, "macro_f1": True, "mae": False}


class TaskScorer:
    """A task's metric under any row weights, with the sorting done once per model and seed."""

    def __init__(self, task: TaskSpec, y: np.ndarray, score: np.ndarray):
        seen = ~np.isnan(y)
        self.kind, self.classes, self.seen = task.kind, task.classes, seen
        self.y = y[seen]
        score = np.asarray(score)[seen]
        if task.kind == "binary":
            _, self.group = np.unique(score, return_inverse=True)      # tied scores share a rank group
            self.n_groups = int(self.group.max()) + 1 if len(self.group) else 0
        elif task.kind == "multiclass":
            self.pred = score.argmax(axis=1) if score.ndim == 2 else score.astype(np.int64)
            self.y_int = self.y.astype(np.int64)
        else:
            self.err = np.abs(score - self.y)

    def __call__(self, w: np.ndarray) -> float:
        """The metric with row weights ``w`` (over the observed rows); NaN where it is undefined."""
        if self.kind == "binary":
            pos = np.bincount(self.group, w * self.y, minlength=self.n_groups)
            neg = np.bincount(self.group, w * (1 - self.y), minlength=self.n_groups)
            total_pos, total_neg = pos.sum(), neg.sum()
            if total_pos <= 0 or total_neg <= 0:
                return float("nan")
            below = np.cumsum(neg) - neg
            return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))
        if self.kind == "multiclass":
            k = self.classes
            tp = np.bincount(self.y_int, w * (self.pred == self.y_int), minlength=k)
            support = np.bincount(self.y_int, w, minlength=k)
            predicted = np.bincount(self.pred, w, minlength=k)
            seen = (support + predicted) > 0
            f1 = np.divide(2 * tp, support + predicted, out=np.zeros(k), where=seen)
            return float(f1[seen].mean()) if seen.any() else float("nan")
        total = w.sum()
        return float((w * self.err).sum() / total) if total > 0 else float("nan")


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}


def _customer_index(customers: np.ndarray) -> tuple[np.ndarray, int]:
    _, index = np.unique(customers, return_inverse=True)
    return index, int(index.max()) + 1 if len(index) else 0


def compare_task(task: TaskSpec, y: np.ndarray, customers: np.ndarray,
                 scores: Mapping[str, Sequence[np.ndarray]], reference: str | None = None,
                 resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, object]:
    """Every model's metric with its interval and, against ``reference``, the paired advantage.

    ``scores``: model -> one score array per seed (rows aligned with ``y``). The advantage is
    ``metric(model) - metric(reference)`` for higher-is-better metrics and the reverse for MAE, so
    a positive advantage always means the model is better.
    """
    if len(y) != len(customers):
        raise DataError(f"task {task.name}: {len(y)} labels but {len(customers)} customer ids")
    metric = METRIC[task.kind]
    sign = 1.0 if HIGHER_IS_BETTER[metric] else -1.0
    scorers = {m: [TaskScorer(task, y, s) for s in runs] for m, runs in scores.items()}
    seen = ~np.isnan(y)
    index, n_customers = _customer_index(np.asarray(customers)[seen])
    rng = np.random.default_rng(seed)
    draws = {m: np.empty(resamples) for m in scorers}
    for b in range(resamples):
        w = rng.poisson(1.0, n_customers)[index].astype(np.float64)
        for m, runs in scorers.items():
            draws[m][b] = runs[int(rng.integers(len(runs)))](w) if len(runs) > 1 else runs[0](w)
    alpha = (1 - level) / 2
    ones = np.ones(int(seen.sum()))
    out: dict[str, object] = {"metric": metric, "rows": int(seen.sum()), "customers": n_customers, "models": {}}
    for m, runs in scorers.items():
        per_seed = [r(ones) for r in runs]
        lo, hi = np.nanquantile(draws[m], [alpha, 1 - alpha])
        out["models"][m] = {**Interval(float(np.mean(per_seed)), float(lo), float(hi)).to_dict(),
                            "seeds": per_seed, "seed_sd": float(np.std(per_seed, ddof=1)) if len(runs) > 1 else 0.0}
    if reference is not None and reference in scorers:
        base = out["models"][reference]["estimate"]
        for m in scorers:
            if m == reference:
                continue
            diff = sign * (draws[m] - draws[reference])
            lo, hi = np.nanquantile(diff, [alpha, 1 - alpha])
            est = sign * (out["models"][m]["estimate"] - base)
            out["models"][m]["advantage"] = {**Interval(float(est), float(lo), float(hi)).to_dict(),
                                             "verdict": "win" if lo > 0 else "loss" if hi < 0 else "tie"}
    return out


def compare_models(tasks: Sequence[TaskSpec], y: Mapping[str, np.ndarray], customers: np.ndarray,
                   scores: Mapping[str, Sequence[Mapping[str, np.ndarray]]], reference: str,
                   resamples: int = 1000, seed: int = 0) -> dict[str, object]:
    """``compare_task`` for every task; ``scores``: model -> per seed {task: scores}. Also counts wins,
    ties and losses of each model against ``reference`` and the mean binary AUC."""
    per_task = {t.name: compare_task(t, y[t.name], customers,
                                     {m: [run[t.name] for run in runs] for m, runs in scores.items()
                                      if all(run.get(t.name) is not None for run in runs)},   # None: not modelled
                                     reference, resamples, seed) for t in tasks}
    tally = {m: {"win": 0, "tie": 0, "loss": 0} for m in scores if m != reference}
    for result in per_task.values():
        for m, r in result["models"].items():
            if "advantage" in r:
                tally[m][r["advantage"]["verdict"]] += 1
    binary = [t.name for t in tasks if t.kind == "binary"]
    mean_auc = {m: float(np.mean([per_task[t]["models"][m]["estimate"] for t in binary]))
                if binary and all(m in per_task[t]["models"] for t in binary) else float("nan") for m in scores}
    return {"reference": reference, "tasks": per_task, "verdicts": tally, "mean_binary_auc": mean_auc,
            "resamples": resamples}


def markdown(result: Mapping[str, object], models: Sequence[str],
             ceiling: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """The comparison as a Markdown table: each model's metric [95% interval], the paired advantage of
    every model over the reference with its verdict, and (with ``ceiling``) the share of the
    achievable signal the first model reaches."""
    ref = result["reference"]
    others = [m for m in models if m != ref]
    head = ["task", "metric", *models, *(f"{m} - {ref}" for m in others)]
    if ceiling:
        head += ["oracle", *(f"{m} share" for m in models)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for task, r in result["tasks"].items():
        row = [task, r["metric"]]
        for m in models:
            v = r["models"].get(m)
            row.append("-" if v is None else f"{v['estimate']:.4f} [{v['low']:.4f}, {v['high']:.4f}]")
        for m in others:
            a = r["models"].get(m, {}).get("advantage")
            row.append("-" if a is None else f"{a['estimate']:+.4f} [{a['low']:+.4f}, {a['high']:+.4f}] {a['verdict']}")
        if ceiling:
            oracle = ceiling.get(task, {})
            row.append(f"{oracle['value']:.4f}" if np.isfinite(oracle.get("value", np.nan)) else "-")
            row += [_share(r["models"].get(m, {}).get("estimate"), oracle) for m in models]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("Mean binary AUC: " + ", ".join(f"{m} {result['mean_binary_auc'][m]:.4f}" for m in models) + ".")
    lines.append("Against " + ref + " (95% paired interval wholly above zero = win, below = loss, else tie): "
                 + "; ".join(f"{m} {v['win']} wins, {v['tie']} ties, {v['loss']} losses"
                             for m, v in result["verdicts"].items() if m in models) + ".")
    return "\n".join(lines)


def share(value: float | None, oracle: Mapping[str, float]) -> float:
    """The share of the achievable signal: (model - chance) / (oracle - chance) in the task's metric
    (for MAE, lower is better, so both differences flip sign). NaN where the oracle does not clear
    chance by a margin (``oracle.NEAR_CHANCE_AUC`` for AUC, 2% of chance otherwise)."""
    best, chance = oracle.get("value", np.nan), oracle.get("chance", np.nan)
    if value is None or not (np.isfinite(best) and np.isfinite(chance) and np.isfinite(value)):
        return float("nan")
    gap = best - chance if oracle.get("metric") != "mae" else chance - best
    if gap < (0.02 if oracle.get("metric") == "auc" else 0.02 * abs(chance)):
        return float("nan")
    return float((value - chance) / gap if oracle.get("metric") != "mae" else (chance - value) / gap)


def _share(value: float | None, oracle: Mapping[str, float]) -> str:
    v = share(value, oracle)
    return f"{v:.0%}" if np.isfinite(v) else "-"
