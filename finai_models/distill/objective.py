"""The α-blended distillation objective for LightGBM: L = α·L_hard + (1 − α)·T²·L_soft.

Soft targets are the teacher's *logits* at temperature T (stored as logits, never as rounded
probabilities), so a row without a hard label still teaches the student through its soft term.
Binary: logistic loss on both terms; multiclass: softmax cross-entropy on both (diagonal Hessian);
regression: ½·squared error on both, no T². With α = 1 the same objective is plain hard-label
training, which is how DIRECT-routed tasks train, so every student emits raw scores of one kind.
The loss value itself (``loss``) is the early-stopping metric on the validation months.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from finai_serving.student import sigmoid, softmax

HESS_FLOOR = 1e-6


@dataclass
class Targets:
    """Hard labels (NaN = missing; class index for multiclass) and the teacher's logits for the same rows."""

    hard: np.ndarray            # [n]
    soft_logits: np.ndarray     # [n] or [n, K]


@dataclass(frozen=True)
class BlendedObjective:
    kind: str                   # binary | multiclass | regression
    alpha: float
    temperature: float = 1.0

    def soft_target(self, t: Targets) -> np.ndarray:
        if self.kind == "binary":
            return sigmoid(t.soft_logits / self.temperature)
        if self.kind == "multiclass":
            return softmax(t.soft_logits / self.temperature)
        return t.soft_logits

    def offset(self, t: Targets) -> np.ndarray:
        """The constant raw score to start boosting from (custom objectives start at 0 otherwise)."""
        soft = self.soft_target(t)
        seen = ~np.isnan(t.hard)
        if self.kind == "multiclass":
            share = soft.mean(axis=0)
            if seen.any():
                counts = np.bincount(t.hard[seen].astype(np.int64), minlength=soft.shape[1]) / seen.sum()
                share = self.alpha * counts + (1 - self.alpha) * share
            logp = np.log(np.clip(share, 1e-6, None))
            return (logp - logp.mean()).astype(np.float64)
        mean = soft.mean() if not seen.any() else self.alpha * t.hard[seen].mean() + (1 - self.alpha) * soft.mean()
        if self.kind == "binary":
            mean = float(np.clip(mean, 1e-4, 1 - 1e-4))
            return np.array([np.log(mean / (1 - mean))])
        return np.array([mean])

    def gradients(self, raw: np.ndarray, t: Targets) -> tuple[np.ndarray, np.ndarray]:
        a, T = self.alpha, self.temperature
        seen = ~np.isnan(t.hard)
        if self.kind == "regression":
            y = np.where(seen, t.hard, 0.0)
            grad = a * seen * (raw - y) + (1 - a) * (raw - t.soft_logits)
            hess = a * seen + (1 - a) * np.ones_like(raw)
            return grad, np.maximum(hess, HESS_FLOOR)
        if self.kind == "binary":
            p, q = sigmoid(raw), sigmoid(raw / T)
            y = np.where(seen, t.hard, 0.0)
            g_hard, h_hard = p - y, p * (1 - p)
            g_soft, h_soft = (q - self.soft_target(t)) / T, q * (1 - q) / T ** 2
            grad = a * seen * g_hard + (1 - a) * T ** 2 * g_soft
            hess = a * seen * h_hard + (1 - a) * T ** 2 * h_soft
            return grad, np.maximum(hess, HESS_FLOOR)
        p, q = softmax(raw), softmax(raw / T)
        onehot = np.zeros_like(p)
        rows = np.flatnonzero(seen)
        onehot[rows, t.hard[rows].astype(np.int64)] = 1.0
        m = seen[:, None]
        grad = a * m * (p - onehot) + (1 - a) * T ** 2 * (q - self.soft_target(t)) / T
        hess = a * m * p * (1 - p) + (1 - a) * q * (1 - q)
        return grad, np.maximum(hess, HESS_FLOOR)

    def loss(self, raw: np.ndarray, t: Targets) -> float:
        """Mean blended loss (the quantity the gradients descend), for early stopping."""
        a, T = self.alpha, self.temperature
        seen = ~np.isnan(t.hard)
        if self.kind == "regression":
            hard = 0.5 * np.mean((raw[seen] - t.hard[seen]) ** 2) if seen.any() else 0.0
            return float(a * hard + (1 - a) * 0.5 * np.mean((raw - t.soft_logits) ** 2))
        if self.kind == "binary":
            def bce(target: np.ndarray, z: np.ndarray) -> np.ndarray:
                return np.logaddexp(0, z) - target * z

            hard = bce(t.hard[seen], raw[seen]).mean() if seen.any() else 0.0
            return float(a * hard + (1 - a) * T ** 2 * bce(self.soft_target(t), raw / T).mean())
        logp = raw - np.logaddexp.reduce(raw, axis=1, keepdims=True)
        logq = raw / T - np.logaddexp.reduce(raw / T, axis=1, keepdims=True)
        hard = -logp[np.flatnonzero(seen), t.hard[seen].astype(np.int64)].mean() if seen.any() else 0.0
        return float(a * hard - (1 - a) * T ** 2 * (self.soft_target(t) * logq).sum(axis=1).mean())
