"""FinAI's Dagster code location.

Every Dagster process that loads it (``finai-pipeline``, the code server, run workers) runs torch
and LightGBM on few cores; OpenMP threads that spin while idle made a student ~3x slower there, so
they sleep unless the operator chose otherwise. Set before either library loads its OpenMP runtime.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
