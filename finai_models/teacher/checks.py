"""Pure functions behind the teacher's asset checks (shared with the tests)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def gate_spread(gates: Mapping[str, Any]) -> float:
    """The largest L1 distance between two tasks' mean gate vectors (0: every task gates alike)."""
    names = gates["experts"]
    m = np.array([[w[n] for n in names] for w in gates["mean_weight"].values()])
    return float(np.abs(m[:, None, :] - m[None, :, :]).sum(-1).max()) if len(m) > 1 else 0.0
