"""Benchmark the Lambda handler: warm ``recommend`` latency, batch throughput, cold start, bundle size.

    python -m benchmarks.serving [--bundle ZIP] [--reps 3000] [--out benchmarks/results]

Without ``--bundle`` it builds the serving tests' bundle (``tests/bundle_fixture.py``: a tiny
teacher, the monthly batch, 600 batch customers) with every one of the 13 tasks forced to a model
(no rule-routed task; students stop early as configured). Its students train on 2,400 rows, so
they have fewer and shallower trees than at scale (the table states the tree count;
``benchmarks/tree_scoring.py`` times the scorers alone on 2,060 larger trees). ``--bundle``
measures any bundle zip instead, e.g. the one ``make run`` builds.

Measured in a child process (``OMP_WAIT_POLICY=PASSIVE``, as the other benchmarks):

- **warm recommend**, one customer per call, in-process through ``handler.handle``: 13 task scores,
  product ranking, constraints, top-3 and a reason per product, and the audit record (appended
  without fsync: the durable default adds one disk flush per request, reported separately).
  Batch customers, and customers absent from the batch who bring their raw features (their gate
  weights come from the gate student and their TreeSHAP is computed per request);
- the same handler with ``scorer: booster`` (each task's ``Booster.predict``), and plain per-task
  ``Booster.predict`` on one row for the 13 tasks alone: the baseline, in the same process;
- **batch throughput**: every batch customer once, sequentially, recommendations per second;
- **cold start**: ``infra/local/invoke_bundle.py`` in a clean interpreter that sees only the bundle
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


def every_task_modelled(doc: dict[str, Any]) -> None:
    """distill.yaml edit: route every task to a model (none to the rule engine)."""
    doc["routing"] = {"binary": {"distill_auc": -1.0, "rule_auc": -1.0, "rule_margin_se": 0.0},
                      "multiclass": {"distill_f1_per_chance": -1.0, "rule_f1_per_chance": -1.0},
                      "regression": {"distill_r2": -1e9, "rule_r2": -1e9}}


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
    import importlib.util

    spec = importlib.util.spec_from_file_location("invoke_bundle", REPO / "infra" / "local" / "invoke_bundle.py")
    invoker = importlib.util.module_from_spec(spec)
    sys.modules["invoke_bundle"] = invoker
    spec.loader.exec_module(invoker)
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
        r: dict[str, Any] = {"bundle": str(bundle) if build_s is None else "synthetic (tests/bundle_fixture.py)",
                             "build_s": None if build_s is None else round(build_s, 1),
                             "zip_mb": round(bundle.stat().st_size / 2**20, 2),
                             "unzipped_mb": round(unzipped / 2**20, 2)}
        env = {"FINAI_SERVING_STATE": str(work / "state"), "FINAI_AUDIT_FSYNC": "0"}
        svc = Service(root, env=env)
        m = svc.model
        r["modelled_tasks"] = sum(s.booster is not None for s in m.students.values())
        r["trees"] = sum(s.booster.num_trees() for s in m.students.values() if s.booster is not None)
        ids = list(m.batch_ids)
        batch_events = [{"action": "recommend", "customer_id": c, "locale": "ko" if i % 2 else "en"}
                        for i, c in enumerate(ids)]
        columns = m.schema["raw_columns"]
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


def markdown(r: dict[str, Any], machine: dict[str, Any]) -> str:
    m = machine
    base = r["booster_predict_13_tasks"]["p50_ms"]
    rows = [("recommend, batch customer (compiled trees)", r["recommend_batch_customer"]),
            ("recommend, features in the request (live TreeSHAP, gate student)", r["recommend_features_in_request"]),
            ("recommend, batch customer, audit fsync on", r["recommend_fsync_audit"]),
            ("recommend, batch customer, scorer: booster", r["recommend_booster_scorer"]),
            (f"{r['modelled_tasks']} x Booster.predict, one row (baseline)", r["booster_predict_13_tasks"])]
    if r["compiled_13_tasks"]:
        rows.append((f"{r['modelled_tasks']} tasks, compiled trees, one call", r["compiled_13_tasks"]))
    lines = [f"# Serving benchmark ({m['cpu_count']} CPUs, {m['platform']}, Python {m['python']})", "",
             f"Bundle: {r['bundle']}; {r['modelled_tasks']} modelled tasks, {r['trees']:,} trees; "
             f"{r['zip_mb']} MB zipped, {r['unzipped_mb']} MB unzipped.", "",
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
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="benchmarks.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, help="a bundle zip (default: build the synthetic one)")
    parser.add_argument("--reps", type=int, default=3000)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.bundle, args.reps)))
        return 0
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", OMP_WAIT_POLICY)}
    cmd = [sys.executable, "-m", "benchmarks.serving", "--child", "--reps", str(args.reps)]
    if args.bundle:
        cmd += ["--bundle", str(args.bundle.resolve())]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    machine = machine_info()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serving.json").write_text(json.dumps({"machine": machine, "result": result}, indent=2) + "\n")
    table = markdown(result, machine)
    (args.out / "serving.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
