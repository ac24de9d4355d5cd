"""Benchmark Phase 0 for one snapshot month: month inputs, the 17 feature groups and the 13 labels.

    python -m benchmarks.phase0 [--quick] [--customers 100000,1000000] [--out benchmarks/results]

Each customer count runs in a fresh child process, so its peak RSS is its own. The child generates
19 synthetic months (2023-01 .. 2024-07) into a temporary work directory, loads them into a DuckDB
warehouse, fits the Phase-0 state on the snapshot month t = 2023-12 (a fixed sample of customers,
so fitting does not scale with N), and then times, for month t alone: ``build_month_inputs``,
each group's ``compute_group`` (transform + contract check) and ``compute_labels``. Generation,
loading and fitting are reported separately; they are not part of the Phase-0 total.

Wall time on a shared machine is noisy, so the child also times a baseline in the same process
right before Phase 0, the scan floor: DuckDB reading the lookback window's card transactions
(``count(*), sum(amount)``). The report gives the Phase-0 total as a multiple of it.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.generator import machine_info, peak_rss_gb, reset_peak_rss

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CUSTOMERS = "100000,1000000"
QUICK_CUSTOMERS = "20000"
START = "2023-01"
N_MONTHS = 19            # 2023-01 .. 2024-07: 12 lookback months up to t, then the 6 label months
SNAPSHOT = "2023-12"     # t: the last training month, fitted on and transformed
FLOOR_RUNS = 3           # timed scan-floor runs after one warm-up; the median is the floor
# The target, for 1M customers only; other sizes have none ("-").
TARGETS: dict[int, dict[str, float]] = {1_000_000: {"phase0_s": 600.0, "peak_rss_gb": 16.0}}


def parse_customers(text: str) -> list[int]:
    """``"100000,1000000"`` -> ``[100000, 1000000]``."""
    values = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        if not item.isdigit() or int(item) < 1:
            raise argparse.ArgumentTypeError(f"customer counts are positive integers, got {item!r}")
        values.append(int(item))
    if not values:
        raise argparse.ArgumentTypeError("no customer counts given")
    return values


def rss_gb() -> float:
    """Current resident memory (VmRSS), decimal GB; 0 where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return 0.0


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS, so earlier steps do not pad Phase 0's peak."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def emit(record: dict[str, Any]) -> None:
    """One JSON line to stdout: the parent keeps whatever stages finished if the child dies."""
    print(json.dumps(record), flush=True)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(name: str, fn: Callable[[], Any], stages: list[dict[str, Any]]) -> Any:
    """Run one Phase-0 stage with its own peak-RSS window; append and emit its numbers.

    A stage that raises (DuckDB out of memory, say) is recorded with its error and returns None,
    so the stages after it are still measured; the run then counts as failing its target.
    """
    reset_peak_rss()
    t0 = time.perf_counter()
    error = None
    try:
        result = fn()
    except Exception as exc:  # any failure is a result to report, not a crash
        result, error = None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    seconds = time.perf_counter() - t0
    stage = {"stage": name, "seconds": seconds, "peak_rss_gb": peak_rss_gb(), "rss_after_gb": rss_gb()}
    if error:
        stage["error"] = error
    stages.append(stage)
    emit(stage)
    log(f"  {name}: {seconds:.1f} s, peak {stage['peak_rss_gb']:.2f} GB" + (f", FAILED: {error}" if error else ""))
    return result


def connect(settings, memory_limit: str):
    import duckdb

    return duckdb.connect(str(settings.path("warehouse")),
                          config={"memory_limit": memory_limit, "threads": settings.pipeline.warehouse.threads})


def scan_floor(con, settings) -> tuple[list[float], int]:
    """Seconds of DuckDB reading the lookback window's card transactions (one warm-up, then timed)."""
    from finai_models import months as M

    schema = settings.pipeline.warehouse.raw_schema
    first = M.first_day(M.shift(SNAPSHOT, -(int(settings.phase0.lookback_months) - 1)))
    sql = f"SELECT count(*), sum(amount) FROM {schema}.card_transactions WHERE month BETWEEN $1 AND $2"
    params = [first, M.first_day(SNAPSHOT)]
    rows = con.execute(sql, params).fetchall()[0][0]
    runs = []
    for _ in range(FLOOR_RUNS):
        t0 = time.perf_counter()
        con.execute(sql, params).fetchall()
        runs.append(time.perf_counter() - t0)
    return runs, int(rows)


def run_child(customers: int, memory_limit: str | None = None) -> dict[str, Any]:
    """Generate, load, fit, then time Phase 0 of month t in this (fresh) process."""
    from finai_models.config import load_settings
    from finai_models.data.generate import generate_synthetic
    from finai_models.data.warehouse import load_dataset
    from finai_models.phase0.features import compute_group
    from finai_models.phase0.inputs import build_month_inputs
    from finai_models.phase0.labels import compute_labels
    from finai_models.phase0.state import fit_state

    with tempfile.TemporaryDirectory(prefix=f"finai-bench-phase0-{customers}-") as tmp:
        settings = load_settings(workdir=tmp)
        seed = int(settings.dataset.generator.seed)
        wh = settings.pipeline.warehouse
        r: dict[str, Any] = {"customers": customers, "months": N_MONTHS, "start": START, "snapshot": SNAPSHOT,
                             "seed": seed, "memory_limit": memory_limit or wh.memory_limit,
                             "threads": wh.threads}

        log(f"  generating {customers:,} x {N_MONTHS} months ...")
        t0 = time.perf_counter()
        generate_synthetic(settings, settings.raw_dir, customers, N_MONTHS, seed, start=START, progress=False)
        r["generate_s"] = time.perf_counter() - t0
        release_memory()

        log("  loading the warehouse ...")
        t0 = time.perf_counter()
        with connect(settings, r["memory_limit"]) as con:
            r["loaded_rows"] = load_dataset(con, settings)
        r["load_s"] = time.perf_counter() - t0
        r["warehouse_bytes"] = settings.path("warehouse").stat().st_size
        r["prep_peak_rss_gb"] = peak_rss_gb()  # generation + loading
        release_memory()

        log("  fitting the Phase-0 state ...")
        t0 = time.perf_counter()
        with connect(settings, r["memory_limit"]) as con:
            state = fit_state(con, settings, months=[SNAPSHOT], log=lambda _msg: None)
        r["fit_s"] = time.perf_counter() - t0
        r["fit_seconds_by_group"] = state.manifest["fit_seconds"]
        r["fit_customers"] = state.manifest["customers_per_month"]
        emit({"prep": {k: r[k] for k in ("generate_s", "load_s", "fit_s")}})
        release_memory()

        stages: list[dict[str, Any]] = []
        with connect(settings, r["memory_limit"]) as con:
            r["floor_runs_s"], r["floor_rows"] = scan_floor(con, settings)
            r["floor_s"] = statistics.median(r["floor_runs_s"])
            release_memory()
            r["pre_phase0_peak_rss_gb"] = peak_rss_gb()  # generation, loading, fitting, scan floor
            r["rss_at_phase0_start_gb"] = rss_gb()
            r["peak_rss_reset_before_phase0"] = reset_peak_rss()
            emit({"prep": {k: r[k] for k in ("floor_s", "floor_rows", "rss_at_phase0_start_gb",
                                             "pre_phase0_peak_rss_gb")}})
            log(f"  Phase 0 of {SNAPSHOT} (scan floor {r['floor_s']:.2f} s) ...")
            t_phase0 = time.perf_counter()
            x = timed("month_inputs", lambda: build_month_inputs(con, settings, SNAPSHOT), stages)
            widths = {}
            for group in state.groups if x is not None else []:  # without inputs no group can run
                table = timed(group.name, lambda g=group: compute_group(g, x, con), stages)
                widths[group.name] = None if table is None else table.num_columns - 2
                del table
            labels = timed("labels", lambda: compute_labels(con, settings, SNAPSHOT, state.mcc_vocab), stages)
            r["phase0_wall_s"] = time.perf_counter() - t_phase0
        r["stages"] = stages
        r["phase0_s"] = sum(s["seconds"] for s in stages)
        r["phase0_peak_rss_gb"] = max(s["peak_rss_gb"] for s in stages)
        r["failed_stages"] = [s["stage"] for s in stages if "error" in s]
        r["snapshot_customers"] = None if x is None else x.n
        r["snapshot_txns"] = None if x is None else len(x.txn_amount)  # the last txn_days days
        r["txn_days"] = int(settings.phase0.txn_days)
        r["feature_dims"] = widths
        r["label_rows"] = None if labels is None else labels.table.num_rows
        r["label_columns"] = None if labels is None else labels.table.num_columns - 2
    r["peak_rss_gb"] = max(r["pre_phase0_peak_rss_gb"], r["phase0_peak_rss_gb"], peak_rss_gb())  # whole child
    return r


def measure(customers: int, memory_limit: str | None = None) -> dict[str, Any]:
    """Run one size in a fresh interpreter; add the ratio and the target verdict."""
    log(f"measuring {customers:,} customers ...")
    extra = ["--duckdb-memory-limit", memory_limit] if memory_limit else []
    proc = subprocess.run([sys.executable, "-m", "benchmarks.phase0", "--child", str(customers), *extra],
                          cwd=REPO, stdout=subprocess.PIPE, text=True)
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and records and "stages" in records[-1]:
        r = records[-1]
    else:  # died (out of memory?): keep the stages that finished so the report still says where it got
        log(f"  the child exited with status {proc.returncode}; reporting the stages it finished")
        r = {"customers": customers, "error": f"child exited with status {proc.returncode}",
             "stages": [rec for rec in records if "stage" in rec]}
        for rec in records:
            r.update(rec.get("prep", {}))
        return r
    r["x_scan_floor"] = r["phase0_s"] / r["floor_s"]
    target = TARGETS.get(customers)
    r["target"] = target
    r["target_pass"] = None if target is None else (not r["failed_stages"] and
        r["phase0_s"] <= target["phase0_s"] and r["phase0_peak_rss_gb"] <= target["peak_rss_gb"])
    return r


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _value(r: dict[str, Any], key: str, fmt: str, bold: bool = False) -> str:
    """A summary cell: ``-`` where a dead child never got as far as ``key``."""
    if r.get(key) is None:
        return "-"
    text = format(r[key], fmt)
    return f"**{text}**" if bold else text


def markdown(results: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """One row per stage with seconds, share of the total and peak RSS per size; then totals and targets."""
    m = machine
    limits = ", ".join(dict.fromkeys(f"DuckDB memory_limit {r.get('memory_limit', '?')}, threads "
                                     f"{r.get('threads', '?')}" for r in results))
    lines = [f"Phase-0 benchmark (one snapshot month, {SNAPSHOT}), {m['timestamp']}: {m['cpu_count']} CPUs, "
             f"{m['memory_total_gb']:.0f} GB RAM, Python {m['python']}, numpy {m['numpy']}, "
             f"pyarrow {m['pyarrow']}; {limits}", ""]
    header = ["stage"]
    for r in results:
        n = f"{r['customers']:,}"
        header += [f"{n} s", f"{n} %", f"{n} peak GB"]
    lines += ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    names = list(dict.fromkeys(s["stage"] for r in results for s in r["stages"]))
    for name in names:
        row = [name]
        for r in results:
            s = next((s for s in r["stages"] if s["stage"] == name), None)
            total = r.get("phase0_s")
            seconds = _cell(s and s["seconds"], ".1f")
            row += [f"{seconds} **FAILED**" if s and "error" in s else seconds,
                    _cell(s and total and 100 * s["seconds"] / total, ".1f"),
                    _cell(s and s["peak_rss_gb"], ".2f")]
        lines.append("| " + " | ".join(row) + " |")

    def summary(label: str, cell: Callable[[dict[str, Any]], str]) -> None:
        row = [f"**{label}**"]
        for r in results:
            row += [cell(r), "", ""]
        lines.append("| " + " | ".join(row) + " |")

    def total(r: dict[str, Any]) -> str:
        text = _value(r, "phase0_s", ".1f", bold=True)
        failed = r.get("failed_stages")
        return f"{text} (incomplete: {len(failed)} failed)" if failed else text

    summary("Phase 0 total s", total)
    summary("Phase 0 peak RSS GB", lambda r: _value(r, "phase0_peak_rss_gb", ".2f", bold=True))
    summary("RSS at Phase-0 start GB", lambda r: _value(r, "rss_at_phase0_start_gb", ".2f"))
    summary("scan floor s", lambda r: _value(r, "floor_s", ".3f"))
    summary("x scan floor", lambda r: _value(r, "x_scan_floor", ".0f", bold=True))
    summary("customers at t", lambda r: _value(r, "snapshot_customers", ","))
    summary("txns in lookback (floor rows)", lambda r: _value(r, "floor_rows", ","))
    summary("txns in the last txn_days (inputs)", lambda r: _value(r, "snapshot_txns", ","))
    summary("generate s (not in total)", lambda r: _value(r, "generate_s", ".1f"))
    summary("load warehouse s (not in total)", lambda r: _value(r, "load_s", ".1f"))
    summary("fit state s (not in total)", lambda r: _value(r, "fit_s", ".1f"))
    summary("child peak RSS GB (all steps)", lambda r: _value(r, "peak_rss_gb", ".2f"))
    lines.append("")
    for r in results:
        if "error" in r:
            lines.append(f"- {r['customers']:,} customers: **{r['error']}**; the rows above are the stages "
                         "that finished")
        for s in (s for s in r["stages"] if "error" in s):
            lines.append(f"- {r['customers']:,} customers, stage {s['stage']} failed after {s['seconds']:.1f} s: "
                         f"`{s['error']}`")
    for r in (r for r in results if r.get("target")):
        t, ok = r["target"], r["target_pass"]
        failed = f" with {len(r['failed_stages'])} failed stage(s)" if r["failed_stages"] else ""
        lines.append(f"- target {r['customers']:,} customers, one month, 17 groups + 13 labels: "
                     f"Phase 0 {r['phase0_s']:.1f} s{failed} <= {t['phase0_s']:.0f} s (10 minutes) "
                     f"and peak RSS {r['phase0_peak_rss_gb']:.2f} GB <= {t['peak_rss_gb']:.0f} GB: "
                     f"**{'pass' if ok else 'FAIL'}**")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.phase0", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--customers", type=parse_customers, default=DEFAULT_CUSTOMERS,
                        help=f"customer counts, comma-separated (default {DEFAULT_CUSTOMERS})")
    parser.add_argument("--quick", action="store_true", help=f"smoke check: only {QUICK_CUSTOMERS} customers")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    parser.add_argument("--duckdb-memory-limit", metavar="SIZE",
                        help="override pipeline.yaml's warehouse.memory_limit (e.g. 12GB), for diagnosis")
    parser.add_argument("--child", metavar="N", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        emit(run_child(int(args.child), args.duckdb_memory_limit))
        return 0
    sizes = parse_customers(QUICK_CUSTOMERS) if args.quick else args.customers
    results = [measure(n, args.duckdb_memory_limit) for n in sizes]
    machine = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "phase0.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    table = markdown(results, machine)
    (args.out / "phase0.md").write_text(table)
    print(table)
    return 1 if any(r.get("target_pass") is False or "error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
