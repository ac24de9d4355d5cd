"""Benchmark distilling the teacher into the 13 LightGBM students: seconds and peak memory per scale.

    python -m benchmarks.distill [--rows 100000,1000000] [--rounds N] [--out benchmarks/results]

A scale is the number of rows in the training set, split as its 12 / 3 / 3 snapshot months (train /
validation / test). 1M rows is more than Phase 0 writes for 1M customers with the committed
``training_set.max_rows_per_month`` (50k rows a month x 18 split months = 900k). Each scale runs in a
fresh child process, so its peak RSS is its own. The child synthesizes rows shaped like the real
training set (1484 columns: the groups of feature_groups.yaml plus 273 ``_log`` copies, as
``benchmarks.teacher``) and a hidden teacher: per task a fixed random map of 30 columns through a
nonlinearity to logits, from which hard labels are drawn (10% missing), so every task is learnable
and every student trains.

Which teacher, which rows: the students learn the **hidden synthetic teacher's** logits, not the
PLE's. The PLE below has **untrained random weights** and only measures time (inference costs the
same); its scores are thrown away. The students train on a **sample**, as ``prepare_inputs`` draws
it: at most ``max_train_rows`` of the training months' rows and ``max_validation_rows`` of the
validation months' rows (``configs/distill.yaml``: 100,000 and 50,000; ``next_mcc`` caps its own
at 50,000), so at 1M rows they see 100,000 of 666,668 training rows; **every test row** is scored
and goes through the fidelity gate. Timed, in the pipeline's order:

- **teacher**: the real PLE of ``configs/teacher.yaml`` (untrained random weights: inference costs
  the same) scoring the rows ``prepare_inputs`` scores: the training sample (``max_train_rows``), the
  validation sample (``max_validation_rows``) and every test row, with the side tensors of the real
  shapes.
- **prepare**: the rest of ``prepare_inputs`` once the logits exist: sampling, writing the matrices
  (``write_part``) and routing (``route_tasks``). Synthesis stands in for reading the training set
  and is not timed.
- **students**: ``train_student`` for the 13 tasks (row caps, column screening, early stopping,
  calibration, as configured).
- **fidelity**: ``evaluate_student`` on every test row.

Seconds on a shared machine are noisy, so the child then trains one binary task again as plain
hard-label LightGBM (built-in ``binary`` objective, ``auc`` metric) on the student's own rows and
columns, parameters and number of rounds: student seconds / that is the cost of the Python blended
objective and stopping metric, a ratio that moves far less between runs. As ``benchmarks.teacher``,
children run with ``OMP_WAIT_POLICY=PASSIVE`` unless the caller set it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np

from benchmarks.generator import machine_info
from benchmarks.teacher import OMP_WAIT_POLICY, feature_schema

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ROWS = "100000,1000000"
TARGET_ROWS, TARGET_S = 1_000_000, 600.0     # the target: 13 students from 1M customers in <= 600 s
PARTS = ("train", "validation", "test")
MONTHS = {"train": [f"2023-{m:02d}" for m in range(1, 13)], "validation": ["2024-07", "2024-08", "2024-09"],
          "test": ["2025-04", "2025-05", "2025-06"]}      # the default split until Step 6 (the recorded results)
STAGES = ("teacher", "prepare", "students", "fidelity")
TEACHER_COLUMNS, NAN_SHARE, CHUNK = 30, 0.1, 50_000
PREVALENCE = (0.01, 0.12)                   # the binary teachers' bias range; the drawn rates land at ~5-30%
REGRESSION_NOISE = 2.0                      # hard = teacher value + N(0, 2^2): the teacher's R^2 is ~0.5
KEY_METRIC = {"binary": ("AUC", "auc"), "multiclass": ("macro-F1", "macro_f1"), "regression": ("MAE", "mae")}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_mb() -> float:
    """The process's high-water RSS so far (ru_maxrss is KiB on Linux), decimal MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def make_teacher(tasks, d: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per task: the columns it reads, a [30, out] weight matrix and the output bias."""
    rng = np.random.default_rng(seed)
    binary = [t.name for t in tasks if t.kind == "binary"]
    prevalence = dict(zip(binary, np.linspace(*PREVALENCE, len(binary)), strict=True))
    out = {}
    for t in tasks:
        k = t.classes if t.kind == "multiclass" else 1
        w = rng.normal(size=(TEACHER_COLUMNS, k)) / np.sqrt(TEACHER_COLUMNS)
        bias = (np.log(prevalence[t.name] / (1 - prevalence[t.name])) * np.ones(1) if t.kind == "binary"
                else rng.normal(scale=0.5, size=k))
        out[t.name] = (np.sort(rng.choice(d, TEACHER_COLUMNS, replace=False)), w, bias)
    return out


def synthesize(tasks, teacher: dict[str, Any], n_raw: int, n_log: int, n: int, seed: int
               ) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """float32 X [n, n_raw + n_log], hard labels and teacher logits per task, built chunk by chunk."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, n_raw + n_log), np.float32)
    hard = {t.name: np.empty(n, np.float32) for t in tasks}
    soft = {t.name: np.empty((n, t.classes) if t.kind == "multiclass" else n, np.float32) for t in tasks}
    for lo in range(0, n, CHUNK):
        part = x[lo:lo + CHUNK]
        part[:, :n_raw] = rng.standard_normal((len(part), n_raw), dtype=np.float32)
        part[:, n_raw:] = np.log1p(np.maximum(part[:, :n_log], 0))
        for t in tasks:
            cols, w, bias = teacher[t.name]
            h = part[:, cols].astype(np.float64) @ w
            z = 2.0 * (h + 0.5 * np.sin(2 * h)) + bias
            u = rng.random(len(part))
            if t.kind == "binary":
                z, y = z[:, 0], (u < 1 / (1 + np.exp(-z[:, 0]))).astype(np.float64)
            elif t.kind == "multiclass":
                p = np.exp(z - z.max(axis=1, keepdims=True))
                y = np.minimum((p.cumsum(1) < (u * p.sum(1))[:, None]).sum(1), t.classes - 1).astype(np.float64)
            else:
                z = z[:, 0]
                y = z + REGRESSION_NOISE * rng.standard_normal(len(part))
            y[rng.random(len(part)) < NAN_SHARE] = np.nan
            soft[t.name][lo:lo + CHUNK], hard[t.name][lo:lo + CHUNK] = z, y
    return x, hard, soft


def teacher_seconds(rows: int, threads: int, seed: int) -> float:
    """Seconds for the configured PLE to score ``rows`` rows (X and side tensors), as ``teacher_logits``."""
    import torch

    from benchmarks.teacher import build_spec, random_data
    from finai_models.config import load_settings
    from finai_models.teacher.data import TeacherData
    from finai_models.teacher.model import build_model
    from finai_models.teacher.run import model_config, teacher_config
    from finai_models.teacher.trainer import predict

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    spec = build_spec()
    model = build_model(spec, model_config(teacher_config(load_settings()))).eval()
    seconds = 0.0
    for lo in range(0, rows, CHUNK):
        x, side, _ = random_data(spec, min(CHUNK, rows - lo), seed + lo)
        data = TeacherData(x.numpy(), {}, {k: v.numpy() for k, v in side.items()})
        started = time.perf_counter()
        predict(model, data, logits=True)
        seconds += time.perf_counter() - started
    return seconds


def baseline_seconds(cfg, task, inputs: Path, student: dict[str, Any], rounds: int) -> float:
    """Plain hard-label LightGBM on the student's own rows, columns and parameters: the same work but the objective."""
    from finai_models.distill.inputs import load_part, sample_rows

    t0 = time.perf_counter()
    x, hard, _ = load_part(inputs, "train", task.name)
    x_val, hard_val, _ = load_part(inputs, "validation", task.name)
    position = {c: i for i, c in enumerate(student["columns"])}
    features = [position[c] for c in student["features"]]
    rows = sample_rows(len(hard), cfg.sample_for(task.name)[0], cfg.seed)
    if rows is not None:
        x, hard = x[rows], hard[rows]
    params = {k: v for k, v in cfg.lightgbm_for(task.name).items()
              if k not in ("n_estimators", "early_stopping_rounds")}
    params.update(objective="binary", metric="auc", verbose=-1, seed=cfg.seed, feature_pre_filter=False)
    train = lgb.Dataset(np.asarray(x)[:, features], np.nan_to_num(hard), weight=(~np.isnan(hard)).astype(float))
    valid = lgb.Dataset(np.asarray(x_val)[:, features], np.nan_to_num(hard_val),
                        weight=(~np.isnan(hard_val)).astype(float), reference=train)
    lgb.train(params, train, num_boost_round=rounds, valid_sets=[valid])
    return time.perf_counter() - t0


def split_rows(rows: int) -> dict[str, int]:
    """Rows of each split in proportion to its months (12 / 3 / 3)."""
    months = {p: len(MONTHS[p]) for p in PARTS}
    sizes = {p: rows * months[p] // sum(months.values()) for p in ("validation", "test")}
    return {"train": rows - sum(sizes.values()), **sizes}


def run_child(rows: int, rounds: int | None) -> dict[str, Any]:
    """Synthesize, then time teacher / prepare / students / fidelity / baseline for one scale, in this process."""
    from finai_models.config import load_settings
    from finai_models.distill.config import distill_config
    from finai_models.distill.inputs import route_tasks, sample_rows, write_part
    from finai_models.distill.students import evaluate_student, train_student

    settings = load_settings()
    cfg, schema = distill_config(settings), feature_schema(settings)
    if rounds:   # a smoke check: cap every student's boosting rounds
        cfg = replace(cfg, overrides={t.name: {**cfg.overrides.get(t.name, {}), "n_estimators": min(
            rounds, int(cfg.lightgbm_for(t.name).get("n_estimators", 300)))} for t in cfg.tasks})
    n_raw, n_log = len(schema.raw_columns), len(schema.log_columns)
    sizes, caps = split_rows(rows), {"train": cfg.max_train_rows, "validation": cfg.max_validation_rows}
    scored = {p: min(n, caps.get(p, n)) for p, n in sizes.items()}
    teacher = make_teacher(cfg.tasks, n_raw + n_log, cfg.seed)
    r: dict[str, Any] = {"rows": rows, "split_rows": sizes, "teacher_rows": scored, "columns": n_raw + n_log,
                         "tasks": len(cfg.tasks), "rounds_cap": rounds, "synthesis_s": 0.0, "prepare_s": 0.0,
                         "threads": int(cfg.lightgbm.get("num_threads", 2))}
    r["teacher_s"] = teacher_seconds(sum(scored.values()), r["threads"], cfg.seed)
    r["peak_mb"] = {"teacher": peak_mb()}
    log(f"  {rows:,} rows: the PLE teacher scored {sum(scored.values()):,} rows in {r['teacher_s']:.1f} s")
    meta: dict[str, Any] = {"training_set": "synthetic", "teacher": "synthetic", "columns": list(schema.columns),
                            "rows": {}, "months": MONTHS}
    with tempfile.TemporaryDirectory(prefix="finai-bench-distill-") as tmp:   # never under the repository
        inputs, students = Path(tmp) / "inputs", Path(tmp) / "students"
        inputs.mkdir()
        for i, part in enumerate(PARTS):
            t0 = time.perf_counter()
            x, hard, soft = synthesize(cfg.tasks, teacher, n_raw, n_log, sizes[part], seed=cfg.seed + 1 + i)
            t1 = time.perf_counter()
            keep = sample_rows(len(x), caps.get(part), cfg.seed)                  # as prepare_inputs
            if keep is not None:
                x, hard, soft = x[keep], {k: v[keep] for k, v in hard.items()}, {k: v[keep] for k, v in soft.items()}
            write_part(inputs, part, x, hard, soft)
            meta["rows"][part] = len(x)
            if part == "validation":
                meta["routing"] = route_tasks(cfg, hard, soft)
            r["synthesis_s"] += t1 - t0
            r["prepare_s"] += time.perf_counter() - t1
            del x, hard, soft
        (inputs / "inputs.json").write_text(json.dumps(meta, indent=1))
        r["peak_mb"]["prepare"] = peak_mb()
        log(f"  prepared in {r['prepare_s']:.1f} s (synthesis {r['synthesis_s']:.1f} s, untimed)")

        per_task: dict[str, dict[str, Any]] = {}
        for t in cfg.tasks:
            t0 = time.perf_counter()
            s = train_student(cfg, t.name, inputs, students / t.name, log=lambda _m: None)
            per_task[t.name] = {"kind": t.kind, "route": s["route"], "iterations": s.get("iterations", 0),
                                "rounds_max": s.get("rounds_max", 0), "train_rows": s.get("train_rows", 0),
                                "features": len(s.get("features", [])), "train_s": time.perf_counter() - t0}
            log(f"  {t.name}: {s['route']}, {s.get('train_rows', 0):,} rows x {len(s.get('features', []))} columns, "
                f"{s.get('iterations', 0)} rounds, {per_task[t.name]['train_s']:.1f} s")
        r["students_s"], r["peak_mb"]["students"] = sum(p["train_s"] for p in per_task.values()), peak_mb()
        for t in cfg.tasks:
            t0 = time.perf_counter()
            f = evaluate_student(cfg, t.name, students / t.name, inputs)
            per_task[t.name].update(fidelity_s=time.perf_counter() - t0, passed=f.passed, metrics=f.metrics,
                                    failures=f.failures)
        r["fidelity_s"], r["peak_mb"]["fidelity"] = sum(p["fidelity_s"] for p in per_task.values()), peak_mb()
        r["total_s"], r["per_task"] = sum(r[f"{s}_s"] for s in STAGES), per_task
        r["passed"] = sum(p["passed"] for p in per_task.values())

        task = next((t for t in cfg.tasks if t.kind == "binary" and per_task[t.name]["route"] != "rule"), None)
        if task is not None:
            p = per_task[task.name]
            patience = int(cfg.lightgbm_for(task.name).get("early_stopping_rounds", 20))
            ran = min(p["iterations"] + patience, p["rounds_max"])   # early stopping runs `patience` past the best
            student = json.loads((students / task.name / "student.json").read_text())
            seconds = baseline_seconds(cfg, task, inputs, student, ran)
            r["baseline"] = {"task": task.name, "rounds": ran, "seconds": seconds, "student_s": p["train_s"],
                             "ratio": p["train_s"] / seconds}
        r["peak_mb"]["baseline"] = peak_mb()
    return r


def measure(rows: int, rounds: int | None) -> dict[str, Any]:
    """Run one scale in a fresh interpreter; its last JSON stdout line is the result."""
    log(f"measuring {rows:,} rows ...")
    cmd = [sys.executable, "-m", "benchmarks.distill", "--child", str(rows)]
    cmd += [f"--rounds={rounds}"] if rounds else []
    proc = subprocess.run(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": OMP_WAIT_POLICY})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"rows": rows, "error": f"child exited with status {proc.returncode}"}
    r = json.loads(lines[-1])
    r["target_pass"] = r["total_s"] <= TARGET_S if rows >= TARGET_ROWS and not rounds else None
    return r


def sample_note(results: list[dict[str, Any]]) -> str:
    """The line that says which teacher the students learn and which rows they see."""
    ok = [r for r in results if "error" not in r]
    seen = "; ".join(f"at {r['rows']:,} rows {r['teacher_rows']['train']:,} of {r['split_rows']['train']:,} "
                     f"training and {r['teacher_rows']['validation']:,} of {r['split_rows']['validation']:,} "
                     f"validation rows, all {r['split_rows']['test']:,} test rows" for r in ok)
    return ("**Note:** the students learn a hidden synthetic teacher (a fixed random map of 30 columns per task), "
            "not the PLE: the PLE timed under *teacher s* has untrained random weights and only measures time. "
            "Students train on a sample: at most `max_train_rows` rows of the training months and "
            "`max_validation_rows` of the validation months (`configs/distill.yaml`; a task may cap lower, "
            "`next_mcc` at 50,000); every test row is scored and gated"
            + (f" ({seen})" if seen else "") + ". Regenerate: `python -m benchmarks.distill`.")


def markdown(results: list[dict[str, Any]], machine: dict[str, Any]) -> str:
    m, ok = machine, [r for r in results if "error" not in r]
    lines = [f"Distillation benchmark, {m['timestamp']}: {m['cpu_count']} CPUs, {m['memory_total_gb']:.0f} GB RAM, "
             f"Python {m['python']}, numpy {m['numpy']}, LightGBM {m['lightgbm']}, OMP_WAIT_POLICY "
             f"{m['omp_wait_policy']}; 13 students on {ok[0]['columns'] if ok else '?'} synthetic columns"
             + (f", **rounds capped at {ok[0]['rounds_cap']}** (a smoke check)" if ok and ok[0]["rounds_cap"] else "")
             + ".", "", sample_note(results), "",
             "| scale (rows) | train/val/test | teacher scores | teacher s | prepare s | students s | fidelity s "
             "| **total s** | peak MB | tasks passed | custom-objective ratio |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['rows']:,} | **{r['error']}** |" if "error" in r else
                     f"| {r['rows']:,} | {'/'.join(f'{v:,}' for v in r['split_rows'].values())} | "
                     f"{sum(r['teacher_rows'].values()):,} | {r['teacher_s']:.1f} | {r['prepare_s']:.1f} | "
                     f"{r['students_s']:.1f} | {r['fidelity_s']:.1f} | **{r['total_s']:.1f}** | "
                     f"{max(r['peak_mb'].values()):,.0f} | {r['passed']}/{r['tasks']} | "
                     + (f"{r['baseline']['ratio']:.2f} |" if "baseline" in r else "- |"))
    lines += ["", "Total = teacher + prepare + students + fidelity (synthesis of the rows is not timed). Peak MB is "
              "the child's process-wide RSS high-water mark. The ratio is student seconds / plain "
              "`binary`-objective LightGBM seconds on the same rows, columns and rounds, same process."]
    target = next((r for r in ok if r["target_pass"] is not None), None)
    lines.append(f"\n- target: 13 students from {TARGET_ROWS:,} rows in <= {TARGET_S:.0f} s on this machine: " + (
        f"{target['total_s']:.1f} s, **{'pass' if target['target_pass'] else 'FAIL'}**" if target else "not measured"))
    if ok:
        big = max(ok, key=lambda r: r["rows"])
        lines += ["", f"Per task at {big['rows']:,} rows (metric: teacher / student on every test row):", "",
                  "| task | kind | route | rows x columns | best round | train s | fidelity s | metric | passed |",
                  "|---|---|---|---:|---:|---:|---:|---|---|"]
        for name, p in big["per_task"].items():
            label, key = KEY_METRIC[p["kind"]]
            mt = p["metrics"]
            metric = (f"{label} {mt[f'teacher_{key}']:.3f} / {mt[f'student_{key}']:.3f}"
                      if f"student_{key}" in mt else "-")
            verdict = "yes" if p["passed"] else "**no**: " + "; ".join(p["failures"])
            lines.append(f"| {name} | {p['kind']} | {p['route']} | {p['train_rows']:,} x {p['features']} | "
                         f"{p['iterations']} | {p['train_s']:.1f} | {p['fidelity_s']:.2f} | {metric} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.distill", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", default=DEFAULT_ROWS, help=f"rows per scale, comma-separated ({DEFAULT_ROWS})")
    parser.add_argument("--rounds", type=int, default=None, help="cap every student's boosting rounds (smoke "
                                                                 "checks; default: distill.yaml's n_estimators)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="results folder")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_child(args.child, args.rounds)), flush=True)
        return 0
    scales = [int(s) for s in args.rows.split(",") if s.strip()]
    if not scales or min(scales) < 1000 or (args.rounds is not None and args.rounds < 1):
        parser.error("scales need >= 1000 rows; --rounds must be positive")
    args.out.mkdir(parents=True, exist_ok=True)
    results = [measure(n, args.rounds) for n in scales]
    machine = {**machine_info(), "lightgbm": lgb.__version__, "omp_wait_policy": OMP_WAIT_POLICY}
    (args.out / "distill.json").write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    table = markdown(results, machine)
    (args.out / "distill.md").write_text(table)
    print(table)
    return 1 if any("error" in r or r["target_pass"] is False for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
