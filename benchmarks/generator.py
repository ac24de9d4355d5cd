"""Benchmark the synthetic data generator: speed, peak memory and Parquet size per dataset size.

    python -m benchmarks.generator [--quick] [--sizes 100000x12,1000000x12] [--out benchmarks/results]

Each size runs in a fresh child process, so its peak RSS is its own and not a leftover of a
bigger earlier size. Wall time on a shared machine is noisy, so each child first times a
baseline, the Parquet I/O floor (random rows of the card-transaction schema written with the
generator's writer settings), and the report gives generator time as a multiple of it: a ratio
that should move far less between machines and runs than the seconds do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from finai_models.data.raw_schema import CARD_TRANSACTIONS

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SIZES = "100000x12,1000000x12"
QUICK_SIZES = "20000x12"
TXN_PER_CUSTOMER_MONTH = 9  # sizes the baseline before the generator has run and counted its rows
# The targets; other sizes have none ("-").
TARGETS: dict[tuple[int, int], dict[str, float]] = {(1_000_000, 12): {"wall_s": 300.0, "peak_rss_gb": 8.0}}
# As DatasetWriter.write, so that the baseline pays exactly the generator's encoding cost.
WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "compression_level": 1, "row_group_size": 1 << 20}
CHANNELS = ["chip", "contactless", "online"]


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"100000x12,1000000x12"`` -> ``[(100000, 12), (1000000, 12)]``."""
    sizes = []
    for item in filter(None, (s.strip() for s in text.split(","))):
        customers, x, months = item.lower().partition("x")
        if not x or int(customers) < 1 or int(months) < 1:
            raise argparse.ArgumentTypeError(f"a size is CUSTOMERSxMONTHS, e.g. 100000x12, got {item!r}")
        sizes.append((int(customers), int(months)))
    if not sizes:
        raise argparse.ArgumentTypeError("no sizes given")
    return sizes


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def reset_peak_rss() -> bool:
    """Reset the peak-RSS high-water mark (Linux >= 4.0) so the baseline does not count."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def write_baseline(folder: Path, customers: int, months: int, rows_per_month: int) -> None:
    """Build and write random card-transaction-shaped tables, one file per month as the generator.

    Month by month rather than one big table, so the floor holds the generator's memory shape
    too (one month in memory at a time) and cannot inflate the peak it is compared against.
    """
    rng = np.random.default_rng(0)
    codes = rng.choice(np.arange(1000, 10000), 300, replace=False).astype(np.int16)
    folder.mkdir(parents=True)
    for m in range(months):
        n = rows_per_month
        first_day = 18262 + 31 * m  # a date32 day number; only its type matters here
        mcc = codes[rng.integers(0, len(codes), n)]
        channel = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, 3, n, dtype=np.int32)),
                                                 pa.array(CHANNELS)).cast(pa.string())
        table = pa.Table.from_arrays([
            pa.array(np.sort(rng.integers(0, customers, n))),
            pa.array(np.full(n, first_day, np.int32), pa.date32()),
            pa.array(first_day * 86_400_000_000 + rng.integers(0, 28 * 86_400, n) * 1_000_000,
                     pa.timestamp("us")),
            pa.array(np.round(rng.lognormal(3.5, 1.0, n), 2)),
            pa.array(mcc),
            pa.array(mcc.astype(np.int64) * 10_000 + rng.integers(0, 500, n)),
            channel,
        ], schema=CARD_TRANSACTIONS)
        pq.write_table(table, folder / f"{m:02d}.parquet", **WRITE_OPTIONS)


def run_child(customers: int, months: int) -> dict[str, Any]:
    """Time the baseline, then the generator, in this (fresh) process; return the raw numbers."""
    from finai_models.config import load_settings
    from finai_models.data.generate import generate_synthetic

    settings = load_settings()
    seed = int(settings.dataset.generator.seed)
    with tempfile.TemporaryDirectory(prefix="finai-bench-") as tmp:
        rows_per_month = customers * TXN_PER_CUSTOMER_MONTH
        t0 = time.perf_counter()
        write_baseline(Path(tmp) / "baseline", customers, months, rows_per_month)
        baseline_s = time.perf_counter() - t0
        baseline_peak = peak_rss_gb()
        for f in (Path(tmp) / "baseline").iterdir():
            f.unlink()
        peak_was_reset = reset_peak_rss()
        out = Path(tmp) / "data"
        t0 = time.perf_counter()
        manifest = generate_synthetic(settings, out, customers, months, seed, progress=False)
        wall_s = time.perf_counter() - t0
        peak = peak_rss_gb()
        parquet_bytes = sum(p.stat().st_size for p in out.rglob("*.parquet"))
    rows = manifest["rows"]
    return {"customers": customers, "months": months, "seed": seed, "wall_s": wall_s,
            "customer_months": sum(rows["monthly_snapshots"].values()),
            "transactions": sum(rows["card_transactions"].values()),
            "peak_rss_gb": peak, "peak_rss_reset_after_baseline": peak_was_reset,
            "parquet_bytes": parquet_bytes, "baseline_s": baseline_s,
            "baseline_rows": rows_per_month * months, "baseline_peak_rss_gb": baseline_peak}


def measure(customers: int, months: int) -> dict[str, Any]:
    """Run one size in a fresh interpreter and add the derived rates, ratio and target verdict."""
    print(f"measuring {customers:,} x {months} ...", file=sys.stderr, flush=True)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.generator", "--child", f"{customers}x{months}"],
                          cwd=REPO, stdout=subprocess.PIPE, text=True, check=True)
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    r["customer_months_per_s"] = r["customer_months"] / r["wall_s"]
    r["transactions_per_s"] = r["transactions"] / r["wall_s"]
    r["x_io_floor"] = r["wall_s"] / r["baseline_s"]
    target = TARGETS.get((customers, months))
    r["target"] = target
    r["target_pass"] = None if target is None else (
        r["wall_s"] <= target["wall_s"] and r["peak_rss_gb"] <= target["peak_rss_gb"])
    return r


def machine_info() -> dict[str, Any]:
    """What the numbers depend on, so results from different machines are not compared blindly."""
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"cpu_count": os.cpu_count(), "memory_total_gb": memory / 1e9,
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "pyarrow": pa.__version__,
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds")}


# (header, cell) per Markdown column; the JSON keeps the unrounded numbers.
COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("customers", lambda r: f"{r['customers']:,}"),
    ("months", lambda r: str(r["months"])),
    ("wall s", lambda r: f"{r['wall_s']:.1f}"),
    ("customer-months", lambda r: f"{r['customer_months']:,}"),
    ("transactions", lambda r: f"{r['transactions']:,}"),
    ("customer-months/s", lambda r: f"{r['customer_months_per_s']:,.0f}"),
    ("transactions/s", lambda r: f"{r['transactions_per_s']:,.0f}"),
    ("peak RSS GB", lambda r: f"{r['peak_rss_gb']:.2f}"),
    ("Parquet MB", lambda r: f"{r['parquet_bytes'] / 1e6:,.0f}"),
    ("baseline s", lambda r: f"{r['baseline_s']:.1f}"),
    ("x I/O floor", lambda r: f"{r['x_io_floor']:.2f}"),
    ("target", lambda r: "-" if r["target_pass"] is None else ("pass" if r["target_pass"] else "FAIL")),
]


def markdown(results: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    """The results as a Markdown table followed by one pass/fail line per target."""
    m = machine
    lines = [f"Generator benchmark, {m['timestamp']}: {m['cpu_count']} CPUs, {m['memory_total_gb']:.0f} GB "
             f"RAM, Python {m['python']}, numpy {m['numpy']}, pyarrow {m['pyarrow']}", "",
             "| " + " | ".join(h for h, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r) for _, cell in COLUMNS) + " |" for r in results]
    lines.append("")
    for r in (r for r in results if r["target"]):
        t, ok = r["target"], r["target_pass"]
        lines.append(f"- target {r['customers']:,} x {r['months']}: "
                     f"wall {r['wall_s']:.1f} s <= {t['wall_s']:.0f} s "
                     f"and peak RSS {r['peak_rss_gb']:.2f} GB <= {t['peak_rss_gb']:.0f} GB: "
                     f"**{'pass' if ok else 'FAIL'}**")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.generator",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=DEFAULT_SIZES,
                        help=f"CUSTOMERSxMONTHS,... (default {DEFAULT_SIZES})")
    parser.add_argument("--quick", action="store_true", help=f"smoke check: only {QUICK_SIZES}")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    parser.add_argument("--child", metavar="CxM", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(*parse_sizes(args.child)[0])), flush=True)
        return 0
    results = [measure(c, m) for c, m in (parse_sizes(QUICK_SIZES) if args.quick else args.sizes)]
    machine = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine, "results": results}
    (args.out / "generator.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(results, machine)
    (args.out / "generator.md").write_text(table)
    print(table)
    return 1 if any(r["target_pass"] is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
