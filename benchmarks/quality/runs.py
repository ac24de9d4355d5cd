"""The quality benchmark's model runs: each returns the test rows' scores per task, per seed.

Every run goes through the code the assets use (``train_lightgbm_baseline``, ``train_teacher``,
``prepare_inputs`` / ``train_student`` / ``evaluate_student``), writes under the benchmark's work
directory, and is read back from the ``test_scores.npz`` the training wrote, so the comparison
scores exactly what training produced.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

Log = Callable[[str], None]
Scores = dict[str, np.ndarray | None]


def _split_scores(path: Path) -> tuple[dict[str, np.ndarray], Scores]:
    from finai_models.teacher.run import load_scores

    z = load_scores(path)
    return z, {k[len("score__"):]: v for k, v in z.items() if k.startswith("score__")}


def lightgbm(settings, training_set: Path, work: Path, log: Log, max_rows: int | None
             ) -> tuple[dict[str, np.ndarray], list[Scores], dict[str, Any]]:
    from finai_models.teacher.baselines import train_lightgbm_baseline

    out = work / "runs" / f"lightgbm-{max_rows}"
    if not (out / "test_scores.npz").is_file():
        train_lightgbm_baseline(settings, training_set, out, log=log, max_train_rows=max_rows)
    summary = json.loads((out / "metrics.json").read_text())
    test, scores = _split_scores(out / "test_scores.npz")
    return test, [scores], {"rounds": summary["rounds"], "chosen": summary.get("chosen"),
                            "candidates": summary.get("candidates"), "validation": summary["validation"]}


def neural(settings, training_set: Path, work: Path, architecture: str, seeds: int,
           log: Log, ablation: str = "full", max_rows: int | None = None
           ) -> tuple[dict[str, np.ndarray], list[Scores], dict[str, Any]]:
    """``architecture`` over ``seeds`` seeds; ``ablation`` is a variant of ``teacher.run.variant``
    (``no_hgcn``, ``sigmoid_gate``, ``adatt``, ...) of the PLE."""
    from finai_models.teacher.run import train_teacher, variant

    runs, details, test = [], {"run_dirs": [], "best_epoch": [], "epochs": [], "samples_per_s": [],
                               "parameters": None, "gates": None}, None
    name = architecture if ablation == "full" else f"{architecture}-{ablation}"
    for seed in range(seeds):
        done = work / "runs" / name / f"seed-{seed}-rows-{max_rows}.json"     # a finished run is read, not retrained
        if done.is_file() and (Path(json.loads(done.read_text())["run_dir"]) / "test_scores.npz").is_file():
            summary = json.loads((Path(json.loads(done.read_text())["run_dir"]) / "metrics.json").read_text())
        else:
            summary = train_teacher(settings, training_set, work / "runs" / name, architecture=architecture,
                                    seed=seed, max_train_rows=max_rows,
                                    log=lambda m, s=seed: log(f"{name} seed {s}: {m}"), **variant(ablation))
            done.write_text(json.dumps({"run_dir": summary["run_dir"]}))
        run_dir = Path(summary["run_dir"])
        test, scores = _split_scores(run_dir / "test_scores.npz")
        runs.append(scores)
        details["run_dirs"].append(str(run_dir))
        details["best_epoch"].append(summary["best_epoch"])
        details["epochs"].append(len(summary["history"]))
        details["samples_per_s"].append(float(np.median([h["samples_per_s"] for h in summary["history"]])))
        details["parameters"] = summary["parameters"]
        if seed == 0:
            details["gates"] = summary.get("gates")
            details["history"] = summary["history"]
            details["task_best"] = summary.get("task_best")
    return test, runs, details


def distil(settings, training_set: Path, teacher_run: str, work: Path, log: Log) -> tuple[list[Scores],
                                                                                          dict[str, Any]]:
    """The 13 students of the first seed's teacher, as ``distill/*`` trains them; scores on every test row."""
    from finai_models.distill.config import distill_config
    from finai_models.distill.inputs import load_part, prepare_inputs
    from finai_models.distill.students import evaluate_student, train_student
    from finai_serving.student import Student

    cfg = distill_config(settings)
    inputs = prepare_inputs(cfg, training_set, Path(teacher_run) / "teacher.pt", work / "distill" / "inputs", log=log)
    scores: Scores = {}
    fidelity: dict[str, Any] = {}
    for task in cfg.tasks:
        out = work / "distill" / "students" / Path(teacher_run).name / task.name
        if not (out / "student.json").is_file():
            with contextlib.redirect_stdout(io.StringIO()):
                train_student(cfg, task.name, inputs, out, log=lambda _: None)
        result = evaluate_student(cfg, task.name, out, inputs)
        fidelity[task.name] = result.to_dict()
        student = Student.load(out)
        if student.route != "rule":
            x, _, _ = load_part(inputs, "test", task.name)
            scores[task.name] = np.asarray(student.predict(np.asarray(x)))
        else:
            scores[task.name] = None       # routed to the rule engine: no student to score
        log(f"student {task.name}: {student.route}, fidelity {'passed' if result.passed else 'FAILED'}")
    passed = sum(f["passed"] for f in fidelity.values())
    return [scores], {"fidelity": fidelity, "passed": passed, "teacher_run": teacher_run,
                      "rows": json.loads((inputs / "inputs.json").read_text())["rows"]}


def ceiling(settings, customers: int, futures: int, log: Log) -> dict[str, Any]:
    """The oracle of the first test month, in each task's comparison metric (AUC, macro-F1, MAE)."""
    from finai_models.data.oracle import generator_oracle

    month = settings.split["test"][0]
    log(f"oracle: {customers:,} customers of {month}, {futures} simulated futures each")
    result = generator_oracle(settings, customers, month, replicates=futures, progress=True)
    tasks = {}
    for name, o in result.tasks.items():
        if o.kind == "binary":
            tasks[name] = {"metric": "auc", "value": o.value, "chance": 0.5, **o.extra}
        elif o.kind == "multiclass":
            tasks[name] = {"metric": "macro_f1", "value": o.extra.get("macro_f1_tuned", o.value),
                           "chance": o.chance, **o.extra}
        else:
            y = o.realised[~np.isnan(o.realised)]
            tasks[name] = {"metric": "mae", "value": o.extra["mae"], "r2": o.value,
                           "chance": float(np.abs(y - np.median(y)).mean()) if len(y) else float("nan"),
                           "rows": o.extra["rows"]}
    return {"month": month, "customers": customers, "futures": futures, "seconds": round(result.seconds, 1),
            "tasks": tasks}
