"""Benchmark scoring the 13 students for one customer: Booster.predict, trees compiled to C, numpy TreeEnsemble.

    python -m benchmarks.tree_scoring [--reps 3000] [--batch 10000] [--students DIR] [--quick] [--out DIR]

The Lambda handler scores every student for one customer per request, so the number that matters
is the time for one row through all 13 tasks. Three backends give the raw score:

- **Booster.predict**: ``lightgbm.Booster.predict(x, raw_score=True, num_iteration=n)``, as
  ``finai_serving.student.Student.raw`` calls it (the baseline);
- **compiled C**: ``finai_serving.compiled``, each student's trees as nested if/else built with
  ``gcc -O2`` when the bundle is built and called through ctypes (here one library per task, so
  each task pays its own call; the bundle's single library scores every task in one call);
- **TreeEnsemble**: ``finai_serving.trees``, numpy only, shipped as ``trees.npz``.

By default the students are trained here on synthetic data shaped like ours: 256 float32 columns
with 5% NaN and 10% exact zeros, 31 leaves, 7 binary, 3 multiclass (K = 7, 4, 50) and 3 regression
tasks with 16 to 150 rounds. ``--students DIR`` scores a real bundle's ``DIR/<task>/model.txt``
instead (``student.json``: ``features``, ``iterations``; tasks routed to the rule engine have no
model and are left out) on synthetic rows of its ``columns``.

One row: ``--reps`` repetitions after a warm-up, each repetition a different row from a pool of
256, every backend scoring all tasks for it (the backends take turns within a repetition, so load
on a shared machine hits them alike); p50 and p99 of the per-row total. Batch: ``--batch`` rows
through all tasks, best of 3. The scored rows also hold a few values LightGBM reads specially
(+-1e-36 and +-1e-35f read as 0.0, +-inf). Every backend's raw scores are compared with Booster.predict's on
the batch and on the row pool (max abs difference; both others should be exactly 0: they follow
LightGBM's decisions and summation order). As the other benchmarks, the measurement runs in a
child process with ``OMP_WAIT_POLICY=PASSIVE`` unless the caller set it (LightGBM's OpenMP threads
otherwise spin on a loaded 2-core machine, and a one-row predict can take milliseconds).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from benchmarks.generator import machine_info
from benchmarks.teacher import OMP_WAIT_POLICY
from finai_serving.compiled import CompiledScorer, build_library, library_source
from finai_serving.trees import K_ZERO_THRESHOLD, TreeEnsemble, pack_booster

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("Booster.predict", "compiled C", "TreeEnsemble")
# (task, kind, classes, rounds): our 13 tasks; rounds vary as early stopping would leave them
TASKS = [("churn_signal", "binary", 1, 120), ("product_stability", "regression", 1, 80),
         ("nba_primary", "multiclass", 7, 40), ("cross_sell_count", "regression", 1, 50),
         ("will_acquire_deposits", "binary", 1, 150), ("will_acquire_investments", "binary", 1, 60),
         ("will_acquire_accounts", "binary", 1, 100), ("will_acquire_lending", "binary", 1, 30),
         ("will_acquire_payments", "binary", 1, 90), ("segment_prediction", "multiclass", 4, 60),
         ("next_mcc", "multiclass", 50, 16), ("mcc_diversity_trend", "regression", 1, 20),
         ("top_mcc_shift", "binary", 1, 40)]
FEATURES, TRAIN_ROWS, POOL, WARMUP, BATCH_REPEATS = 256, 2000, 256, 200, 3
EDGE_VALUES, EDGE_SHARE = (1e-36, -1e-36, K_ZERO_THRESHOLD, -K_ZERO_THRESHOLD, np.inf, -np.inf), 0.002
PARAMS = {"num_leaves": 31, "learning_rate": 0.15, "min_data_in_leaf": 20, "max_bin": 63, "num_threads": 2,
          "verbose": -1, "seed": 42}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def synthetic_rows(n: int, columns: int, seed: int) -> np.ndarray:
    """float32 rows with 5% NaN and 10% exact zeros: every missing-value rule of the trees is exercised."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, columns), dtype=np.float32)
    x[rng.random((n, columns)) < 0.05] = np.nan
    x[rng.random((n, columns)) < 0.10] = 0.0
    return x


def train_synthetic(rounds_scale: float) -> list[dict[str, Any]]:
    """The 13 students trained on synthetic rows: each task's target is a nonlinear map of 20 random columns."""
    rng = np.random.default_rng(7)
    x = synthetic_rows(TRAIN_ROWS, FEATURES, seed=1)
    v = np.nan_to_num(x.astype(np.float64))
    students = []
    for name, kind, classes, rounds in TASKS:
        t0 = time.perf_counter()
        cols = rng.choice(FEATURES, 20, replace=False)
        h = v[:, cols] @ rng.normal(size=(20, classes)) / np.sqrt(20)
        z = h + 0.5 * np.sin(3 * h) + 0.3 * rng.standard_normal(h.shape)
        y = {"binary": (z[:, 0] > 0.3).astype(float), "multiclass": z.argmax(1).astype(float),
             "regression": z[:, 0]}[kind]
        params = {**PARAMS, "objective": kind, **({"num_class": classes} if kind == "multiclass" else {})}
        booster = lgb.train(params, lgb.Dataset(x, y), max(1, round(rounds * rounds_scale)))
        students.append({"task": name, "kind": kind, "booster": booster, "iterations": booster.current_iteration(),
                         "columns": np.arange(FEATURES), "train_s": time.perf_counter() - t0})
        log(f"  trained {name}: {kind}, {booster.num_trees()} trees, {students[-1]['train_s']:.1f} s")
    return students


def load_students(folder: Path) -> tuple[list[dict[str, Any]], int]:
    """A bundle's students with a model (rule-routed tasks have none), and the width of the shared row."""
    students, width = [], 0
    for meta_path in sorted(folder.glob("*/student.json")):
        meta = json.loads(meta_path.read_text())
        width = len(meta["columns"])
        if not (meta_path.parent / "model.txt").is_file():
            continue
        position = {c: i for i, c in enumerate(meta["columns"])}
        booster = lgb.Booster(model_file=str(meta_path.parent / "model.txt"))
        students.append({"task": meta["task"], "kind": meta["kind"], "booster": booster,
                         "iterations": int(meta["iterations"]), "train_s": 0.0,
                         "columns": np.array([position[c] for c in meta["features"]], np.intp)})
    if not students:
        raise SystemExit(f"no student with a model.txt under {folder}")
    return students, width


def compile_student(arrays: dict[str, np.ndarray], workdir: Path, name: str) -> Callable[[np.ndarray], np.ndarray]:
    """One student as its own compiled library (``finai_serving.compiled``): rows [n, features] -> raw scores."""
    width = int(arrays["num_features"])
    source, layout = library_source([(name, arrays, range(width))])
    build_library(source, workdir / f"{name}.so")
    scorer = CompiledScorer(workdir / f"{name}.so", layout, width)

    def score(x: np.ndarray) -> np.ndarray:
        out = [scorer.raw(row)[name] for row in x]
        return np.concatenate(out) if out[0].ndim == 1 else np.concatenate(out, axis=0)

    return score


def build_backends(students: list[dict[str, Any]], workdir: Path) -> dict[str, Any]:
    """Per task and backend, a function of float32 rows [n, its features] -> raw scores; with build seconds."""
    t0 = time.perf_counter()
    packed = [pack_booster(s["booster"].dump_model(num_iteration=s["iterations"]), s["iterations"]) for s in students]
    ensembles = [TreeEnsemble.from_arrays(a) for a in packed]
    pack_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:      # gcc runs as a child: 2 at once
        compiled = list(pool.map(lambda i: compile_student(packed[i], workdir, f"student{i}"), range(len(packed))))
    compile_s = time.perf_counter() - t0

    def booster_fn(s: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: s["booster"].predict(x, raw_score=True, num_iteration=s["iterations"])

    functions = {"Booster.predict": [booster_fn(s) for s in students], "compiled C": compiled,
                 "TreeEnsemble": [e.raw for e in ensembles]}
    shapes = [{"task": s["task"], "kind": s["kind"], "classes": e.num_class, "trees": len(a["tree_root"]),
               "max_depth": e.max_depth, "split_nodes": len(a["threshold"]), "features": e.num_features,
               "train_s": s["train_s"]} for s, a, e in zip(students, packed, ensembles, strict=True)]
    return {"functions": functions, "tasks": shapes, "pack_s": pack_s, "compile_s": compile_s}


def max_diff(functions: dict[str, list], inputs: list[np.ndarray]) -> dict[str, float]:
    """Largest |raw - Booster raw| over every task, per backend."""
    reference = [np.asarray(f(x)).reshape(len(x), -1) for f, x in zip(functions[BACKENDS[0]], inputs, strict=True)]
    return {b: max(float(np.abs(np.asarray(f(x)).reshape(len(x), -1) - r).max())
                   for f, x, r in zip(functions[b], inputs, reference, strict=True)) for b in BACKENDS}


def time_one_row(functions: dict[str, list], pool: list[np.ndarray], reps: int) -> dict[str, dict[str, Any]]:
    """Per backend: nanoseconds per row for all tasks (p50, p99) and each task's p50."""
    per_task = {b: np.empty((reps, len(pool)), np.int64) for b in BACKENDS}
    clock = time.perf_counter_ns
    for rep in range(-WARMUP, reps):
        row = rep % POOL
        rows = [x[row:row + 1] for x in pool]
        for b in BACKENDS[rep % 3:] + BACKENDS[:rep % 3]:            # take turns at going first
            for t, (f, x) in enumerate(zip(functions[b], rows, strict=True)):
                t0 = clock()
                f(x)
                if rep >= 0:
                    per_task[b][rep, t] = clock() - t0
    out = {}
    for b, ns in per_task.items():
        total = ns.sum(axis=1) / 1e3
        out[b] = {"p50_us": float(np.percentile(total, 50)), "p99_us": float(np.percentile(total, 99)),
                  "task_p50_us": (np.percentile(ns, 50, axis=0) / 1e3).tolist()}
    return out


def time_batch(functions: dict[str, list], inputs: list[np.ndarray]) -> dict[str, float]:
    """Per backend: the best of 3 runs of every task over the whole batch, seconds."""
    best = dict.fromkeys(BACKENDS, np.inf)
    for repeat in range(BATCH_REPEATS):
        for b in BACKENDS[repeat % 3:] + BACKENDS[:repeat % 3]:
            t0 = time.perf_counter()
            for f, x in zip(functions[b], inputs, strict=True):
                f(x)
            best[b] = min(best[b], time.perf_counter() - t0)
    return best


def run_child(reps: int, batch: int, students_dir: Path | None, quick: bool) -> dict[str, Any]:
    if students_dir:
        students, width = load_students(students_dir)
        source = f"students at {students_dir}"
    else:
        students, width = train_synthetic(0.25 if quick else 1.0), FEATURES
        source = "synthetic students"
    with tempfile.TemporaryDirectory(prefix="finai-bench-trees-") as tmp:     # never under the repository
        log(f"  packing and compiling {len(students)} students ...")
        built = build_backends(students, Path(tmp))
        log(f"  packed in {built['pack_s']:.1f} s, compiled in {built['compile_s']:.1f} s")
        functions = built["functions"]
        rows = synthetic_rows(batch, width, seed=3)
        edges = np.random.default_rng(4).random(rows.shape)     # and values LightGBM reads specially, for the check
        for i, value in enumerate(EDGE_VALUES):
            rows[(edges >= i * EDGE_SHARE) & (edges < (i + 1) * EDGE_SHARE)] = value
        inputs = [np.ascontiguousarray(rows[:, s["columns"]]) for s in students]
        pool = [x[:POOL] for x in inputs]
        r: dict[str, Any] = {"source": source, "reps": reps, "batch": batch, "rounds_scale": 0.25 if quick else 1.0,
                             "tasks": built["tasks"], "pack_s": built["pack_s"], "compile_s": built["compile_s"],
                             "max_abs_diff_batch": max_diff(functions, inputs)}
        per_row = [max_diff(functions, [x[i:i + 1] for x in pool]) for i in range(POOL)]
        r["max_abs_diff_one_row"] = {b: max(d[b] for d in per_row) for b in BACKENDS}
        log(f"  timing one row x {reps} ...")
        r["one_row"] = time_one_row(functions, pool, reps)
        log(f"  timing {batch:,} rows x {BATCH_REPEATS} ...")
        r["batch_s"] = time_batch(functions, inputs)
    return r


def markdown(r: dict[str, Any], machine: dict[str, Any]) -> str:
    m, base = machine, r["one_row"][BACKENDS[0]]
    lines = [f"Tree-scoring benchmark, {m['timestamp']}: {m['cpu_count']} CPUs, Python {m['python']}, numpy "
             f"{m['numpy']}, LightGBM {m['lightgbm']}, {m['gcc']}, OMP_WAIT_POLICY {m['omp_wait_policy']}; "
             f"{len(r['tasks'])} {r['source']}, {sum(t['trees'] for t in r['tasks']):,} trees"
             + (", **rounds x 0.25** (a smoke check)" if r["rounds_scale"] != 1.0 else "") + ".", "",
             f"| backend | 1 row: p50 us | p99 us | x Booster (p50) | {r['batch']:,} rows: s | x Booster "
             "| max abs diff vs Booster |", "|---|---:|---:|---:|---:|---:|---:|"]
    for b in BACKENDS:
        one, diff = r["one_row"][b], max(r["max_abs_diff_batch"][b], r["max_abs_diff_one_row"][b])
        lines.append(f"| {b} | {one['p50_us']:,.1f} | {one['p99_us']:,.1f} | {one['p50_us'] / base['p50_us']:.2f} | "
                     f"{r['batch_s'][b]:.3f} | {r['batch_s'][b] / r['batch_s'][BACKENDS[0]]:.2f} | {diff:.1e} |")
    lines += ["", f"One row: all tasks for one customer, {r['reps']:,} repetitions over {POOL} rows, per-row total. "
              f"Batch: best of {BATCH_REPEATS}; Booster.predict uses LightGBM's OpenMP threads, the others one core. "
              f"Build time: packing to arrays {r['pack_s']:.1f} s, gcc -O2 {r['compile_s']:.1f} s "
              f"(up to {os.cpu_count()} at once).", "",
              "| task | kind | trees | max depth | split nodes | features | "
              + " | ".join(f"{b} p50 us" for b in BACKENDS) + " |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for i, t in enumerate(r["tasks"]):
        lines.append(f"| {t['task']} | {t['kind']}{'' if t['classes'] == 1 else ' ' + str(t['classes'])} | "
                     f"{t['trees']} | {t['max_depth']} | {t['split_nodes']:,} | {t['features']} | "
                     + " | ".join(f"{r['one_row'][b]['task_p50_us'][i]:.1f}" for b in BACKENDS) + " |")
    return "\n".join(lines) + "\n"


def gcc_version() -> str:
    out = subprocess.run(["gcc", "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.tree_scoring",
                                     description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--reps", type=int, default=3000, help="one-row repetitions after warm-up (3000)")
    parser.add_argument("--batch", type=int, default=10_000, help="rows of the batch (10000)")
    parser.add_argument("--students", type=Path, help="score DIR/<task>/model.txt instead of synthetic students")
    parser.add_argument("--quick", action="store_true", help="a smoke check: a quarter of the rounds, 300 reps, "
                                                             "1000 rows")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.reps, args.batch = 300, 1000
    if args.reps < 100 or args.batch < POOL:
        parser.error(f"--reps must be >= 100 and --batch >= {POOL}")
    if args.child:
        print(json.dumps(run_child(args.reps, args.batch, args.students, args.quick)), flush=True)
        return 0
    cmd = [sys.executable, "-m", "benchmarks.tree_scoring", "--child", f"--reps={args.reps}", f"--batch={args.batch}"]
    cmd += (["--quick"] if args.quick else []) + ([f"--students={args.students.resolve()}"] if args.students else [])
    env = {**os.environ, "OMP_WAIT_POLICY": OMP_WAIT_POLICY}
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        log(f"the measuring child exited with status {proc.returncode}")
        return 1
    r = json.loads(lines[-1])
    machine = {**machine_info(), "lightgbm": lgb.__version__, "gcc": gcc_version(),
               "omp_wait_policy": env["OMP_WAIT_POLICY"]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tree_scoring.json").write_text(json.dumps({"machine": machine, "result": r}, indent=2) + "\n")
    table = markdown(r, machine)
    (args.out / "tree_scoring.md").write_text(table)
    print(table)
    return 0 if max(max(r["max_abs_diff_batch"].values()), max(r["max_abs_diff_one_row"].values())) <= 1e-9 else 1


if __name__ == "__main__":
    sys.exit(main())
