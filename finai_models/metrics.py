"""Task metrics shared by Phase-0 checks, training and distillation (one implementation each)."""

from __future__ import annotations

import numpy as np


def ranks(values: np.ndarray) -> np.ndarray:
    """Average ranks along axis 0 (ties share their mean rank), for a [n] or [n, d] array."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(values, np.float64), axis=0)


def auc(y: np.ndarray, score: np.ndarray) -> np.ndarray | float:
    """ROC AUC of a binary target for one score [n] or many [n, d] (Mann-Whitney, ties averaged)."""
    y = np.asarray(y).astype(bool)
    pos, neg = y.sum(), (~y).sum()
    if pos == 0 or neg == 0:
        return np.full(np.shape(score)[1:], np.nan) if np.ndim(score) > 1 else float("nan")
    result = auc_from_ranks(ranks(score), y)
    return result if np.ndim(score) > 1 else float(result)


def auc_from_ranks(score_ranks: np.ndarray, y: np.ndarray) -> np.ndarray:
    """AUC of every column from precomputed ranks: rank once, score many targets."""
    y = np.asarray(y).astype(bool)
    pos, neg = y.sum(), (~y).sum()
    return (score_ranks[y].sum(axis=0) - pos * (pos + 1) / 2) / (pos * neg)


def macro_ovr_auc(y: np.ndarray, proba: np.ndarray) -> float:
    """Mean one-vs-rest AUC over the classes present in ``y`` (proba: [n, classes])."""
    y = np.asarray(y).astype(int)
    scores = [auc(y == c, proba[:, c]) for c in np.unique(y) if 0 < (y == c).sum() < len(y)]
    return float(np.nanmean(scores)) if scores else float("nan")


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    ss_tot = ((y - y.mean()) ** 2).sum()
    return float(1 - ((y - pred) ** 2).sum() / ss_tot) if ss_tot > 0 else float("nan")


def abs_corr(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|Pearson r| of every column of x [n, d] with y [n]; 0 for constant columns."""
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    xc = x - x.mean(axis=0)
    yc = y - y.mean()
    denom = np.sqrt((xc ** 2).sum(axis=0) * (yc ** 2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(denom > 0, (xc * yc[:, None]).sum(axis=0) / denom, 0.0)
    return np.abs(r)


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision: the mean precision at each positive, ranked by score (ties broken by order)."""
    order = np.argsort(-score, kind="stable")
    hits = y[order] > 0
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def macro_f1(y: np.ndarray, pred: np.ndarray, classes: int) -> float:
    """Unweighted mean F1 over the classes that occur in ``y`` or ``pred``."""
    y, pred = y.astype(np.int64), pred.astype(np.int64)
    confusion = np.bincount(y * classes + pred, minlength=classes * classes).reshape(classes, classes)
    tp = np.diag(confusion).astype(np.float64)
    support, predicted = confusion.sum(axis=1), confusion.sum(axis=0)
    seen = (support + predicted) > 0
    f1 = np.divide(2 * tp, support + predicted, out=np.zeros(classes), where=seen)
    return float(f1[seen].mean())


def top_k_accuracy(y: np.ndarray, proba: np.ndarray, k: int) -> float:
    top = np.argpartition(-proba, min(k, proba.shape[1]) - 1, axis=1)[:, :k]
    return float((top == y.astype(np.int64)[:, None]).any(axis=1).mean())


def ndcg_at_k(relevance: np.ndarray, score: np.ndarray, k: int) -> float:
    """Mean NDCG@k over rows with at least one relevant item; ``relevance`` is 0/1 [n, items]."""
    keep = relevance.sum(axis=1) > 0
    if not keep.any():
        return float("nan")
    rel, sc = relevance[keep].astype(np.float64), score[keep]
    order = np.argsort(-sc, axis=1, kind="stable")[:, :k]
    discount = 1 / np.log2(np.arange(2, k + 2))
    dcg = (np.take_along_axis(rel, order, axis=1) * discount[: order.shape[1]]).sum(axis=1)
    ideal = (-np.sort(-rel, axis=1)[:, :k] * discount[: min(k, rel.shape[1])]).sum(axis=1)
    return float((dcg / ideal).mean())


def auc_standard_error(auc_value: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982) standard error of an AUC from its positive and negative counts.

    Routing uses it so that a teacher's validation AUC of 0.52 on 100 positives (noise) is not
    read as the same evidence as 0.52 on 100,000 positives."""
    if positives <= 0 or negatives <= 0 or not np.isfinite(auc_value):
        return float("nan")
    a = float(auc_value)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (positives - 1) * (q1 - a * a) + (negatives - 1) * (q2 - a * a)) / (positives * negatives)
    return float(np.sqrt(max(var, 0.0)))
