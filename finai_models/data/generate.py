"""Produce a raw dataset folder: the synthetic panel or a converted Santander CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from finai_models import months as M
from finai_models.config import Settings
from finai_models.data.store import DatasetWriter, fingerprint
from finai_models.data.synthetic import simulate
from finai_models.data.synthetic_params import build_params
from finai_models.errors import FinAIError
from finai_models.progress import progress_bar


def synthetic_identity(settings: Settings, customers: int, n_months: int, seed: int, start: str) -> dict[str, Any]:
    """What defines a synthetic dataset: same identity, same bytes."""
    config = {"generator": settings.dataset.generator.model_dump(), "products": settings.products,
              "mcc": settings.mcc.codes}
    return {"source": "synthetic", "customers": customers, "months": n_months, "seed": seed, "start": start,
            "config": fingerprint(config)}


def generate_synthetic(settings: Settings, out: Path, customers: int, n_months: int, seed: int,
                       start: str | None = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Simulate ``customers`` x ``n_months`` and stream each month to Parquet under ``out``.

    Returns the manifest. A folder that already holds this exact dataset is left as it is.
    """
    if isinstance(customers, bool) or not isinstance(customers, int | np.integer) or customers < 1:
        raise FinAIError(f"--customers must be a positive integer, got {customers!r}")
    if isinstance(n_months, bool) or not isinstance(n_months, int | np.integer) or n_months < 1:
        raise FinAIError(f"--months must be a positive integer, got {n_months!r}")
    start = start or settings.months[0]
    writer = DatasetWriter(Path(out), synthetic_identity(settings, int(customers), int(n_months), seed, start))
    if not overwrite and (existing := writer.existing()) is not None:
        return existing
    writer.open(overwrite=overwrite)
    params = build_params(settings)
    months = M.month_range(start, M.shift(start, n_months - 1))
    bar = progress_bar(total=n_months, desc=f"generate {customers:,} customers", unit="month", enabled=progress)
    with bar:
        for tables in simulate(params, settings, int(customers), start, int(n_months), seed):
            writer.write("customers", tables.month, tables.customers)
            writer.write("monthly_snapshots", tables.month, tables.snapshots)
            writer.write("card_transactions", tables.month, tables.transactions)
            bar.set_postfix(month=tables.month, txns=f"{tables.transactions.num_rows:,}")
            bar.update(1)
    assert sorted(writer.tables["monthly_snapshots"]) == months
    return writer.close({"has_card_transactions": True})
