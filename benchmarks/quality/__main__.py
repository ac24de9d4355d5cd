"""Does the teacher earn its place? Every model on the same held-out months, with intervals and a ceiling.

    python -m benchmarks.quality [--customers 100000] [--seeds 3] [--rows-per-month 12000] [--out benchmarks/results]

1. **Data** (``panel.py``): a synthetic panel of ``--customers`` through Phase 0 and the training
   set, by the functions the assets call, on the committed default split (train 2023-01..12,
   validation 2024-07, test 2025-02..03). The training set samples ``--rows-per-month`` customers of
   each snapshot month (the cap that keeps the run near 90 minutes on 2 cores). Built once per
   scale under ``benchmarks/out/quality/``, then reused.
2. **Models**, all on the same rows: per-task LightGBM on hard labels with the committed search
   (``baselines.lightgbm.search``, chosen on the validation months only); the PLE teacher, MMoE and
   shared-bottom, each over ``--seeds`` seeds with the committed ``configs/teacher.yaml``; the 13
   LightGBM students distilled from the first seed's teacher (``configs/distill.yaml``).
3. **Ceiling** (``finai_models.data.oracle``): for ``--oracle-customers`` customers of the first
   test month, the mean label over ``--oracle-futures`` re-simulations of the months after t from the
   generator's hidden state at t; its metric on the realised labels is what a model knowing the
   whole state could score.
4. **Report** (``finai_models.teacher.quality``): per task each model's metric on the test months
   with a 95% hierarchical bootstrap interval (customers, and seeds), the paired advantage over
   LightGBM with its interval (a win only where it is wholly above zero), and each model's share of
   the achievable signal. ``quality.json`` and ``quality.md`` go to ``--out``; README's table is
   generated from the JSON (``python -m benchmarks.quality.readme``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODELS = ("ple", "lightgbm", "mmoe", "shared_bottom", "students")
SHOWN = ("ple", "ple_ensemble", "lightgbm", "mmoe", "shared_bottom", "students")


def log(message: str) -> None:
    print(f"[quality {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    p.add_argument("--customers", type=int, default=100_000)
    p.add_argument("--seeds", type=int, default=3, help="seeds per neural model (default 3)")
    p.add_argument("--rows-per-month", type=int, default=12_000,
                   help="training-set rows sampled per snapshot month (default 12000)")
    p.add_argument("--max-train-rows", type=int, default=72_000,
                   help="training rows every model learns from: a seeded sample of every training month "
                        "(default 72000, half the training set: the cap that keeps 3 seeds near 90 minutes)")
    p.add_argument("--data-seed", type=int, default=42, help="the generator's seed")
    p.add_argument("--oracle-customers", type=int, default=5000)
    p.add_argument("--oracle-futures", type=int, default=128)
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    p.add_argument("--models", default=",".join(MODELS), help=f"subset of {','.join(MODELS)}")
    p.add_argument("--changes", action="store_true",
                   help="instead: the PLE and the PLE with each of Step 7's changes undone "
                        "(teacher.run.CHANGES), against the PLE (writes quality_changes.json/.md)")
    p.add_argument("--ablation", action="store_true",
                   help="instead: the PLE and each variant of configs/teacher.yaml ablation.variants, against the "
                        "full PLE (writes quality_ablation.json/.md)")
    p.add_argument("--work", type=Path, default=REPO / "benchmarks" / "out" / "quality")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    p.add_argument("--name", default="quality", help="results file stem (default quality)")
    return p.parse_args(argv)


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, check=True).stdout.strip()
        return sha + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    from finai_models.teacher.service import tune_process

    tune_process()            # as the training service: sleeping OpenMP threads, a heap that is kept
    from benchmarks.generator import machine_info
    from benchmarks.quality.panel import prepare
    from benchmarks.quality.runs import ceiling, distil, lightgbm, neural

    models = [m for m in args.models.split(",") if m]
    unknown = sorted(set(models) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {MODELS}")
    if args.changes:
        from finai_models.teacher.run import CHANGES

        models = ["ple", *(f"ple-{c}" for c in CHANGES)]
        args.name = args.name if args.name != "quality" else "quality_changes"
    elif args.ablation:
        from finai_models.config import load_settings
        from finai_models.teacher.run import teacher_config

        models = ["ple", *(f"ple-{v}" for v in teacher_config(load_settings())["ablation"]["variants"] if v != "full")]
        args.name = args.name if args.name != "quality" else "quality_ablation"
    started = time.perf_counter()
    work = args.work / f"c{args.customers}-r{args.rows_per_month}-s{args.data_seed}"
    settings, training_set, data = prepare(work, args.customers, args.rows_per_month, args.data_seed, log=log)
    seconds: dict[str, float] = {"data": round(time.perf_counter() - started, 1)}
    runs: dict[str, list[dict[str, np.ndarray]]] = {}
    details: dict[str, Any] = {}
    test = None
    for model in models:
        t0 = time.perf_counter()
        if model == "lightgbm":
            test, runs[model], details[model] = lightgbm(settings, training_set, work, log, args.max_train_rows)
        elif model == "students":
            if "ple" not in details:
                raise SystemExit("students are distilled from the PLE teacher: list ple before students")
            runs[model], details[model] = distil(settings, training_set, details["ple"]["run_dirs"][0], work, log)
        else:
            architecture, _, ablation = model.partition("-")
            test, runs[model], details[model] = neural(settings, training_set, work, architecture, args.seeds, log,
                                                       ablation or "full", args.max_train_rows)
        seconds[model] = round(time.perf_counter() - t0, 1)
        log(f"{model} done in {seconds[model]:.0f} s")
    if len(runs.get("ple", [])) > 1:      # seed ensembling: the seeds' scores averaged, no extra training
        runs["ple_ensemble"] = [{t: np.mean([run[t] for run in runs["ple"]], axis=0) for t in runs["ple"][0]}]
    t0 = time.perf_counter()
    oracle = ceiling(settings, args.oracle_customers, args.oracle_futures, log)
    seconds["oracle"] = round(time.perf_counter() - t0, 1)

    from finai_models.teacher.quality import compare_models, markdown
    from finai_models.teacher.tasks import from_config

    tasks = tuple(from_config(t) for t in settings.tasks)
    y = {t.name: test[f"label__{t.name}"] for t in tasks}
    reference = "ple" if args.changes or args.ablation else "lightgbm"
    result = compare_models(tasks, y, test["customer_id"], runs, reference, resamples=args.resamples)
    shown = [m for m in SHOWN if m in runs] + [m for m in runs if m not in SHOWN]
    table = markdown(result, shown, oracle["tasks"])
    seconds["total"] = round(time.perf_counter() - started, 1)
    record = {
        "benchmark": "quality", "commit": _commit(), "machine": machine_info(),
        "data": {"source": "synthetic generator (configs/datasets/synthetic.yaml)", **data},
        "seeds": {"neural": list(range(args.seeds)), "data": args.data_seed}, "max_train_rows": args.max_train_rows,
        "resamples": args.resamples, "comparison": result, "oracle": oracle, "models": details,
        "seconds": seconds, "markdown": table,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(record, indent=1, default=_json))
    from benchmarks.quality.report import render

    if args.name == "quality":
        (args.out / f"{args.name}.md").write_text(render(record))
    else:            # --changes / --ablation: their own table; quality.md picks the changes up (report.py)
        (args.out / f"{args.name}.md").write_text(f"# {args.name}\n\n{table}\n")
    print(table)
    log(f"wrote {args.out / args.name}.json and .md in {seconds['total'] / 60:.1f} min")
    return 0


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


if __name__ == "__main__":
    sys.exit(main())
