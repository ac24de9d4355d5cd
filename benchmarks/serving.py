"""Benchmark the Lambda handler: warm ``recommend`` latency, batch throughput, cold start, bundle size.

    python -m benchmarks.serving [--bundle ZIP] [--reps 3000] [--out benchmarks/results]

Without ``--bundle`` it measures two bundles, each in its own child:

1. the serving tests' bundle (``tests/bundle_fixture.py``: a tiny teacher, the monthly batch, 600
   batch customers), built here with every one of the 13 tasks forced to a model (no rule-routed
   task; students stop early as configured) and the blocking fidelity gate relaxed: this bundle
   measures time, not the tiny teacher's students. Its students train on 2,400 rows, so they have fewer
   and shallower trees than at scale (the table states the tree count;
   ``benchmarks/tree_scoring.py`` times the scorers alone on 2,060 larger trees);
2. the bundle ``make run`` left in ``<workdir>/artifacts/bundles/`` (``.finai/`` unless
   ``FINAI_WORKDIR`` says otherwise), the newest ``finai-<month>.zip``, where the real routing
   sends weak tasks to the rule engine. When there is none, the results say so and quote the last
   committed measurement of it, with the command that re-measures it.

For every bundle the results say how many of the 13 tasks have a model, read from the bundle's
students (``model/students/<task>/student.json``: route ``distill`` or ``direct``; ``rule`` has no
model). ``--bundle`` measures that one zip only.

Measured in a child process (``OMP_WAIT_POLICY=PASSIVE``, as the other benchmarks):

- **warm recommend**, one customer per call, in-process through ``handler.handle``: 13 task scores,
  product ranking, constraints, top-3 and a reason per product, and the audit record (appended
  without fsync: the durable default adds one disk flush per request, reported separately).
  Batch customers, and customers absent from the batch who bring their raw features (their gate
  weights come from the gate student and their TreeSHAP is computed per request);
- the same handler with ``scorer: booster`` (each task's ``Booster.predict``), and plain per-task
  ``Booster.predict`` on one row for the 13 tasks alone: the baseline, in the same process;
- **batch throughput**: every batch customer once, sequentially, recommendations per second;
- **cold start**: ``finai_assets/invoke_bundle.py`` in a clean interpreter that sees only the bundle
  and its runtime packages: import + first call, median of 5;
- **bundle size**: zipped and unzipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.generator import machine_info
from benchmarks.teacher import OMP_WAIT_POLICY

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"p50_ms": 2.0, "p99_ms": 10.0, "cold_s": 1.5, "zip_mb": 50.0}
WARMUP = 200
SYNTHETIC = "synthetic (tests/bundle_fixture.py)"
MAKE_RUN_COMMAND = "make run && python -m benchmarks.serving"
# The make-run bundle's numbers as last measured and committed (09e5119, benchmarks/README.md's serving
# section): quoted when no make-run bundle is present, so the results never go silent about it.
LAST_MAKE_RUN = {"customers": 2000, "modelled_tasks": 4, "tasks": 13, "p50_ms": 0.58, "p99_ms": 0.98,
                 "cold_s": 0.45, "zip_mb": 5.2, "commit": "09e5119"}


def make_run_bundle() -> tuple[Path, Path | None]:
    """The folder ``make run`` writes bundles to and its newest ``finai-<month>.zip`` (None: none there)."""
    from finai_models.artifacts import ArtifactPaths
    from finai_models.config import load_settings

    folder = ArtifactPaths.of(load_settings()).bundle("0000-00").parent
    zips = sorted(folder.glob("finai-*.zip"))         # finai-YYYY-MM.zip: the name orders the months
    return folder, (zips[-1] if zips else None)


def task_routes(bundle: Path) -> dict[str, str]:
    """Task -> route (distill | direct | rule) from the bundle's ``student.json`` files."""
    with zipfile.ZipFile(bundle) as z:
        return {name.split("/")[2]: json.loads(z.read(name))["route"] for name in sorted(z.namelist())
                if name.startswith("model/students/") and name.endswith("/student.json")}


def every_task_modelled(doc: dict[str, Any]) -> None:
    """distill.yaml edit: route every task to a model (none to the rule engine) and let every student
    through the blocking fidelity gate. This bundle measures time only: the tiny teacher's students
    are not judged here (a student of the 2,400-row teacher that missed the gate would stop the bundle
    from being built at all)."""
    doc["routing"] = {"binary": {"distill_auc": -1.0, "rule_auc": -1.0, "rule_margin_se": 0.0},
                      "multiclass": {"distill_f1_per_chance": -1.0, "rule_f1_per_chance": -1.0},
                      "regression": {"distill_r2": -1e9, "rule_r2": -1e9}}
    doc["fidelity"]["tier1"] = {"binary": {"max_auc_gap": 1.0, "max_ece": 1.0},
                                "multiclass": {"max_macro_f1_gap": 1.0},
                                "regression": {"max_mae_gap": 1e9, "max_rmse_gap": 1e9}}


def build_bundle(workdir: Path) -> Path:
    sys.path.insert(0, str(REPO / "tests"))          # the serving tests' synthetic bundle, built the same way
    import conftest  # noqa: F401 - sets a private work directory before finai_assets could read one
    from bundle_fixture import build

    return build(workdir, conftest.write_training_set, every_task_modelled)["zip"]


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def time_calls(call, events: list[dict[str, Any]], reps: int) -> list[float]:
    for event in events[:WARMUP]:
        call(event)
    out = []
    for i in range(reps):
        event = events[i % len(events)]
        t0 = time.perf_counter()
        call(event)
        out.append(time.perf_counter() - t0)
    return out


def cold_start(bundle: Path, workdir: Path) -> dict[str, Any]:
    from finai_assets import invoke_bundle as invoker

    task = workdir / "task"
    invoker.unpack(bundle, task)
    env = {"FINAI_SERVING_STATE": str(workdir / "cold-state")}
    runs = [invoker.invoke_timed(task, {"action": "recommend", "customer_id": "1", "locale": "en"}, env=env)
            for _ in range(5)]
    assert all(r.response["status"] == 200 for r in runs), runs[0].response
    return {"cold_s": round(float(np.median([r.cold_start_s for r in runs])), 3),
            "import_s": round(float(np.median([r.import_s for r in runs])), 3),
            "first_call_s": round(float(np.median([r.call_s for r in runs])), 3),
            "runtime_packages": runs[0].packages}


def measure(bundle: Path | None, reps: int) -> dict[str, Any]:
    from finai_serving.handler import Service, handle
    from finai_serving.model import ServingModel

    with tempfile.TemporaryDirectory(prefix="finai-bench-serving-") as tmp:      # never under the repository
        work = Path(tmp)
        if bundle is None:
            print("building the synthetic bundle (tiny teacher, 13 modelled students) ...", flush=True)
            t0 = time.perf_counter()
            bundle = build_bundle(work / "build")
            build_s = time.perf_counter() - t0
        else:
            build_s = None
        root = work / "unpacked"
        with zipfile.ZipFile(bundle) as z:
            z.extractall(root)
            unzipped = sum(i.file_size for i in z.infolist())
        routes = task_routes(bundle)
        shown = bundle.relative_to(REPO) if bundle.is_relative_to(REPO) else bundle
        r: dict[str, Any] = {"bundle": str(shown) if build_s is None else SYNTHETIC,
                             "build_s": None if build_s is None else round(build_s, 1),
                             "zip_mb": round(bundle.stat().st_size / 2**20, 2),
                             "unzipped_mb": round(unzipped / 2**20, 2), "routes": routes, "tasks": len(routes),
                             "modelled_tasks": sum(route != "rule" for route in routes.values())}
        env = {"FINAI_SERVING_STATE": str(work / "state"), "FINAI_AUDIT_FSYNC": "0"}
        svc = Service(root, env=env)
        m = svc.model
        r["batch_customers"] = len(m.batch_ids)
        boosters = sum(s.booster is not None for s in m.students.values())
        assert boosters == r["modelled_tasks"], f"{boosters} students loaded a model, routes say {routes}"
        r["trees"] = sum(s.booster.num_trees() for s in m.students.values() if s.booster is not None)
        ids = list(m.batch_ids)
        batch_events = [{"action": "recommend", "customer_id": c, "locale": "ko" if i % 2 else "en"}
                        for i, c in enumerate(ids)]
        columns = m.schema.raw_columns
        fresh_events = [{"action": "recommend", "customer_id": f"new-{i}", "locale": "en",
                         "features": dict(zip(columns, m.batch_raw[i].tolist(), strict=True))} for i in range(50)]
        call = lambda event: handle(svc, event)  # noqa: E731
        print(f"warm recommend x {reps} ...", flush=True)
        r["recommend_batch_customer"] = percentiles(time_calls(call, batch_events, reps))
        r["recommend_features_in_request"] = percentiles(time_calls(call, fresh_events, max(reps // 5, 300)))
        durable = Service(root, env={**env, "FINAI_AUDIT_FSYNC": "1", "FINAI_SERVING_STATE": str(work / "durable")})
        r["recommend_fsync_audit"] = percentiles(time_calls(lambda e: handle(durable, e), batch_events,
                                                            max(reps // 5, 300)))
        booster_svc = Service(root, env={**env, "FINAI_SERVING_STATE": str(work / "booster")})
        booster_svc.model = ServingModel.load(root, scorer="booster")
        r["recommend_booster_scorer"] = percentiles(time_calls(lambda e: handle(booster_svc, e), batch_events, reps))
        rows = [m.customer(c, None).x for c in ids[:256]]
        boosters = [(s.booster, s.selected, s.meta["iterations"]) for s in m.students.values() if s.booster is not None]

        def plain(i: int) -> None:
            x = rows[i % len(rows)]
            for booster, selected, iterations in boosters:
                booster.predict(x[:, selected] if selected is not None else x, raw_score=True,
                                num_iteration=iterations)

        r["booster_predict_13_tasks"] = percentiles(time_calls(plain, list(range(len(rows))), reps))
        r["compiled_13_tasks"] = percentiles(time_calls(lambda i: m.compiled.raw(rows[i % len(rows)]),
                                                         list(range(len(rows))), reps)) if m.compiled else None
        t0 = time.perf_counter()
        for event in batch_events:
            assert handle(svc, event)["status"] == 200
        r["throughput_per_s"] = round(len(batch_events) / (time.perf_counter() - t0), 1)
        print("cold start x 5 ...", flush=True)
        r.update(cold_start(bundle, work))
    return r


def routes_line(r: dict[str, Any]) -> str:
    rule = sorted(t for t, route in r["routes"].items() if route == "rule")
    return (f"**{r['modelled_tasks']} of {r['tasks']} tasks modelled**"
            + (f" ({len(rule)} routed to the rule engine: {', '.join(rule)})" if rule else " (none routed to rules)"))


def bundle_section(r: dict[str, Any], title: str) -> list[str]:
    base = r["booster_predict_13_tasks"]["p50_ms"]
    rows = [("recommend, batch customer (compiled trees)", r["recommend_batch_customer"]),
            ("recommend, features in the request (live TreeSHAP, gate student)", r["recommend_features_in_request"]),
            ("recommend, batch customer, audit fsync on", r["recommend_fsync_audit"]),
            ("recommend, batch customer, scorer: booster", r["recommend_booster_scorer"]),
            (f"{r['modelled_tasks']} x Booster.predict, one row (baseline)", r["booster_predict_13_tasks"])]
    if r["compiled_13_tasks"]:
        rows.append((f"{r['modelled_tasks']} tasks, compiled trees, one call", r["compiled_13_tasks"]))
    lines = [f"## {title}", "",
             f"Bundle: {r['bundle']}; {routes_line(r)}, {r['trees']:,} trees, {r['batch_customers']:,} batch "
             f"customers; {r['zip_mb']} MB zipped, {r['unzipped_mb']} MB unzipped.", "",
             "| path | p50 ms | p99 ms | mean ms | p50 / baseline |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {v['p50_ms']:.3f} | {v['p99_ms']:.3f} | {v['mean_ms']:.3f} | {v['p50_ms'] / base:.2f} |"
              for name, v in rows]
    ok = (r["recommend_batch_customer"]["p50_ms"] <= TARGETS["p50_ms"]
          and r["recommend_batch_customer"]["p99_ms"] <= TARGETS["p99_ms"] and r["cold_s"] <= TARGETS["cold_s"]
          and r["zip_mb"] <= TARGETS["zip_mb"])
    lines += ["", f"- batch throughput: {r['throughput_per_s']:,} recommendations/s (one process, sequential)",
              f"- cold start (clean interpreter, bundle + {', '.join(r['runtime_packages'])}): {r['cold_s']} s "
              f"(import {r['import_s']} s, first call {r['first_call_s']} s)",
              f"- targets: warm p50 <= {TARGETS['p50_ms']} ms, p99 <= {TARGETS['p99_ms']} ms, cold <= "
              f"{TARGETS['cold_s']} s, zip <= {TARGETS['zip_mb']:.0f} MB: **{'PASS' if ok else 'FAIL'}**", ""]
    return lines


def missing_section(missing: dict[str, Any]) -> list[str]:
    last = missing["last_committed"]
    return ["## The bundle `make run` builds: not present", "",
            f"No `finai-*.zip` was in `{missing['searched']}` when this ran, so it was not measured here. "
            f"Last committed measurement ({last['commit']}): {last['customers']:,} customers, "
            f"{last['modelled_tasks']} of {last['tasks']} tasks modelled, warm recommend {last['p50_ms']} ms p50 / "
            f"{last['p99_ms']} ms p99, cold start {last['cold_s']} s, {last['zip_mb']} MB zipped. "
            f"Re-measure: `{missing['command']}`.", ""]


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    load = m.get("load_average_1m") or {"start": float("nan"), "end": float("nan")}
    lines = [f"# Serving benchmark ({m['cpu_count']} CPUs, {m['platform']}, Python {m['python']}, {m['timestamp']})",
             "", f"1-minute load average {load['start']:.1f} at the start, {load['end']:.1f} at the end (the "
             f"benchmark's own children included): above the CPU count, other jobs shared the machine.", ""]
    titles = {"synthetic": "Synthetic bundle, every task modelled", "make_run": "The bundle `make run` builds",
              "given": "Bundle given with --bundle"}
    for r in report["bundles"]:
        lines += bundle_section(r, titles[r["role"]]) if "error" not in r else [
            f"## {titles[r['role']]}", "", f"**{r['error']}**", ""]
    if report.get("make_run_missing"):
        lines += missing_section(report["make_run_missing"])
    return "\n".join(lines)


def run_child(bundle: Path | None, reps: int, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.serving", "--child", "--reps", str(reps)]
    if bundle:
        cmd += ["--bundle", str(bundle.resolve())]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return {"error": f"child exited with status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="measure this bundle zip only (default: the synthetic one, "
                                                    "then the newest one make run left)")
    parser.add_argument("--reps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.bundle, args.reps)))
        return 0
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY)}
    report: dict[str, Any] = {"machine": machine_info(), "bundles": []}
    load_start = os.getloadavg()[0]     # other jobs on the machine: 1-minute load vs the CPU count
    if args.bundle:
        plan: list[tuple[str, Path | None]] = [("given", args.bundle)]
    else:
        folder, found = make_run_bundle()
        plan = [("synthetic", None)] + ([("make_run", found)] if found else [])
        if found is None:
            shown = folder.relative_to(REPO) if folder.is_relative_to(REPO) else folder
            report["make_run_missing"] = {"searched": str(shown), "last_committed": LAST_MAKE_RUN,
                                          "command": MAKE_RUN_COMMAND}
    for role, bundle in plan:
        print(f"measuring the {role} bundle{f' {bundle}' if bundle else ''} ...", file=sys.stderr, flush=True)
        report["bundles"].append({"role": role, **run_child(bundle, args.reps, env)})
    report["machine"]["load_average_1m"] = {"start": load_start, "end": os.getloadavg()[0]}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    (args.out / "serving.md").write_text(table)
    print(table)
    return 1 if any("error" in r for r in report["bundles"]) else 0


if __name__ == "__main__":
    sys.exit(main())
