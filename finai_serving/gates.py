"""The teacher's gate weights for customers the monthly batch did not score: a small linear student.

The monthly batch stores every scored customer's layer-0 gate weights ([tasks, experts]: how much
each task leaned on its own tower and on each shared expert for *that* customer). A customer who
arrives with features but without a batch row still gets gate-weighted reasons: a ridge map from
a few screened columns to the log gate weights, softmaxed per task. Fitted in
``finai_models.serving.batch`` and judged there on held-out customers with this same function.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def predict_gates(x: np.ndarray, student: Mapping[str, np.ndarray]) -> np.ndarray:
    """``[n, output columns]`` -> gate weights ``[n, tasks, experts]`` (rows sum to 1 per task)."""
    cols = student["columns"]
    z = (np.nan_to_num(np.asarray(x, np.float64)[:, cols]) - student["mean"]) / student["scale"]
    logits = (z @ student["weights"] + student["bias"]).reshape(len(z), *student["shape"])
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)
