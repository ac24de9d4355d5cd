"""The quality benchmark's data: a synthetic panel through Phase 0 to a training set, as the assets do it.

The same functions the Dagster assets call, in the same order, without the orchestration:
``generate_synthetic`` (raw/raw_dataset), ``load_dataset`` (the raw tables), ``fit_state``
(phase0/fitted_state, training months only), ``build_month_inputs`` + ``compute_group`` (month
inputs and the 17 groups), ``compute_labels`` (labels/labels) and ``build_training_set``
(training/training_set), on the dataset config's default split. Only the months the split and its
label windows need are built. Everything lives in one work directory per (customers, rows per
month); a finished training set is reused, so a second run only trains.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import duckdb

from finai_models import months as M
from finai_models.config import Settings, load_settings
from finai_models.phase0.features import compute_group, inputs_path, write_group
from finai_models.phase0.inputs import build_month_inputs
from finai_models.phase0.labels import compute_labels
from finai_models.phase0.state import fit_state
from finai_models.phase0.training_set import build_training_set, split_months
from finai_models.progress import progress_bar

LABEL_SCHEMA = "phase0"


def benchmark_settings(workdir: Path, rows_per_month: int) -> Settings:
    """The committed configs with the work directory and the training set's rows per month replaced."""
    settings = load_settings(workdir=workdir)
    limits = settings.pipeline.training_set.model_copy(update={"max_rows_per_month": int(rows_per_month)})
    return dataclasses.replace(settings, pipeline=settings.pipeline.model_copy(update={"training_set": limits}))


def prepare(workdir: Path, customers: int, rows_per_month: int, seed: int, log=print) -> tuple[Settings, Path, dict]:
    """The training set of a ``customers``-customer panel (built once, then reused) and what it took."""
    from finai_models.data.generate import generate_synthetic
    from finai_models.data.warehouse import load_dataset

    settings = benchmark_settings(workdir, rows_per_month)
    done = workdir / "prepared.json"
    if done.is_file():
        record = json.loads(done.read_text())
        log(f"reusing the training set of {customers:,} customers at {workdir / record['training_set']}")
        return settings, workdir / record["training_set"], record
    started = time.perf_counter()
    splits = split_months(settings)
    snapshot = sorted({m for months in splits.values() for m in months})
    horizon = max(t.window[1] for t in settings.tasks)
    first, last = settings.months[0], M.shift(snapshot[-1], horizon)
    manifest = generate_synthetic(settings, settings.raw_dir, customers, M.diff(last, first) + 1, seed, start=first)
    timings: dict[str, float] = {"generate": time.perf_counter() - started}
    settings.path("warehouse").parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(settings.path("warehouse")))
    con.execute(f"SET memory_limit = '{settings.pipeline.warehouse.memory_limit}'")
    con.execute(f"SET threads = {int(settings.pipeline.warehouse.threads)}")
    try:
        t0 = time.perf_counter()
        load_dataset(con, settings)
        timings["warehouse"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        state = fit_state(con, settings, log=lambda _: None)
        timings["fit_state"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {LABEL_SCHEMA}")
        with progress_bar(total=len(snapshot), desc="phase 0", unit="month") as bar:
            for month in snapshot:
                x = build_month_inputs(con, settings, month)
                path = inputs_path(settings, month)
                path.parent.mkdir(parents=True, exist_ok=True)
                x.save(path)
                for group in state.groups:
                    write_group(settings, group.name, month, compute_group(group, x, con))
                labels = compute_labels(con, settings, month, state.mcc_vocab).table
                con.register("_labels", labels)
                con.execute(f"CREATE TABLE IF NOT EXISTS {LABEL_SCHEMA}.labels AS SELECT * FROM _labels WITH NO DATA")
                con.execute(f"DELETE FROM {LABEL_SCHEMA}.labels WHERE month = ?", [M.first_day(month)])
                con.execute(f"INSERT INTO {LABEL_SCHEMA}.labels SELECT * FROM _labels")
                con.unregister("_labels")
                bar.update(1)
        timings["phase0"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        folder, schema = build_training_set(con, settings, state.version, log=log)
        timings["training_set"] = time.perf_counter() - t0
    finally:
        con.close()
    record: dict[str, Any] = {"customers": customers, "seed": seed, "rows_per_month": rows_per_month,
                              "dataset": manifest["fingerprint"], "state_version": state.version,
                              "training_set": str(folder.resolve().relative_to(workdir.resolve())),
                              "rows": dict(schema.rows), "split": {p: list(m) for p, m in schema.split.items()},
                              "seconds": {k: round(v, 1) for k, v in timings.items()}}
    done.write_text(json.dumps(record, indent=1))
    log(f"training set ready in {sum(timings.values()):.0f} s: {dict(schema.rows)}")
    return settings, folder, record
