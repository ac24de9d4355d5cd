"""Leakage predicates, shared by the blocking asset checks and by training.

Class A (time): sources of features at or before t, label windows after t, a split gap at least
as long as the longest label window, fitted state from training months only.
Class B (definition): no label or label-derived column among the features; no feature with
|corr| >= threshold with a label; no single feature that predicts a label almost perfectly.
Each function returns a list of human-readable findings; empty means clean.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import numpy as np

from finai_models import months as M
from finai_models.config import Task
from finai_models.metrics import abs_corr, auc_from_ranks, ranks
from finai_models.phase0.inputs import month_end


def future_sources(lineage: dict[str, str], month: str) -> list[str]:
    """Tables whose latest row read for month t lies at or after the end of t."""
    end = month_end(month)
    findings = []
    for table, latest in lineage.items():
        if latest in ("None", ""):
            continue
        seen = dt.datetime.fromisoformat(latest)
        if seen >= end:
            findings.append(f"{table}: read a row dated {latest}, after the snapshot month {month} ended")
    return findings


def early_label_windows(lineage: dict[str, tuple[int, int]]) -> list[str]:
    """Tasks whose label window starts at or before the snapshot month."""
    return [f"{task}: label window starts at t{first:+d} (must start at t+1 or later)"
            for task, (first, _last) in lineage.items() if first < 1]


def split_gap_findings(split: dict[str, tuple[str, str]], tasks: Iterable[Task]) -> list[str]:
    """Gaps (months strictly between consecutive splits) shorter than the longest label window."""
    longest = max(t.window[1] for t in tasks)
    findings = []
    for before, after in (("train", "validation"), ("validation", "test")):
        gap = M.diff(split[after][0], split[before][1]) - 1
        if gap < longest:
            findings.append(f"{before} -> {after}: {gap} months between {split[before][1]} and {split[after][0]}, "
                            f"the longest label window is {longest}")
    return findings


def fit_month_findings(fit_months: Iterable[str], train: tuple[str, str]) -> list[str]:
    return [f"fitted state saw {m}, outside the training months {train[0]}..{train[1]}"
            for m in fit_months if not train[0] <= m <= train[1]]


def label_named_columns(columns: Iterable[str], tasks: Iterable[Task]) -> list[str]:
    """Feature columns named after a label or a label source."""
    names = [t.name for t in tasks]
    return [f"column {c!r} is named after label {n!r}" for c in columns for n in names if n in c] + \
        [f"column {c!r} looks like a label column" for c in columns if c.startswith("label_") or c.endswith("_label")]


def label_correlation_findings(features: np.ndarray, columns: list[str], labels: dict[str, np.ndarray],
                               tasks: Iterable[Task], max_abs_corr: float, max_single_auc: float) -> list[str]:
    """Features correlated with a label at |r| >= max_abs_corr, or separating it alone (AUC >= max_single_auc).

    Multiclass labels are scanned one class at a time (one-vs-rest indicators).
    """
    findings = []
    rank_cache: dict[bytes, np.ndarray] = {}
    for task in tasks:
        y = labels[task.name]
        keep = ~np.isnan(y)
        if keep.sum() < 10:
            continue
        x, yk = features[keep], y[keep]
        key = np.packbits(keep).tobytes()
        if key not in rank_cache:  # tasks with the same observable rows share one ranking of the features
            rank_cache[key] = ranks(x)
        x_ranks = rank_cache[key]
        targets = {task.name: yk}
        if task.type == "multiclass":
            targets = {f"{task.name}=={int(c)}": (yk == c).astype(float) for c in np.unique(yk)
                       if 0.01 * len(yk) <= (yk == c).sum() <= 0.99 * len(yk)}
        for target, values in targets.items():
            corr = abs_corr(x, values)
            for j in np.flatnonzero(corr >= max_abs_corr):
                findings.append(f"{columns[j]} ~ {target}: |corr| = {corr[j]:.3f}")
            if task.type == "regression":
                rank_corr = abs_corr(x_ranks, ranks(values))
                for j in np.flatnonzero((rank_corr >= max_single_auc) & (corr < max_abs_corr)):
                    findings.append(f"{columns[j]} predicts {target} alone: rank corr = {rank_corr[j]:.3f}")
            elif 0 < values.mean() < 1:
                scores = auc_from_ranks(x_ranks, values)
                separation = np.maximum(scores, 1 - scores)
                for j in np.flatnonzero((separation >= max_single_auc) & (corr < max_abs_corr)):
                    findings.append(f"{columns[j]} predicts {target} alone: AUC = {separation[j]:.3f}")
    return findings
