"""One training run of the teacher (or a baseline) on a Phase-0 training set, start to finish.

Shared by the shell entry point, the Dagster Pipes service and the ablation: load the split,
build the ``ModelSpec`` from the feature schema and ``configs/feature_groups.yaml``, fit the input
scaler on training rows, train with checkpoints under ``run_dir`` (resuming when one is there),
then score validation and test months and write ``teacher.pt``, ``metrics.json`` and plots.
The run directory is keyed by everything that defines the run, so a re-run after a crash finds
its own checkpoint and a changed configuration starts clean.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finai_models.artifacts import set_current, write_atomic
from finai_models.config import Settings
from finai_models.data.store import fingerprint
from finai_models.errors import ConfigError, FinAIError
from finai_models.teacher.config import INPUT_OPTIONS, teacher_config
from finai_models.teacher.data import (
    InputEncoder,
    TeacherData,
    load_split,
    nonzero_inputs,
    read_schema,
    validate,
)
from finai_models.teacher.distributed import SINGLE_PROCESS, Cluster
from finai_models.teacher.evaluate import evaluate, gate_summary
from finai_models.teacher.model import ModelConfig, build_model
from finai_models.teacher.spec import EXPERTS, ModelSpec
from finai_models.teacher.trainer import TrainConfig, Trainer, predict

Log = Callable[[str], None]


def model_config(doc: dict[str, Any], **overrides: Any) -> ModelConfig:
    values = {**(doc.get("model") or {}), **{k: v for k, v in overrides.items() if v is not None}}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return ModelConfig(**values)


def train_config(doc: dict[str, Any], **overrides: Any) -> TrainConfig:
    return TrainConfig(**{**(doc.get("train") or {}), **{k: v for k, v in overrides.items() if v is not None}})


# Step 7's changes to the teacher, each undone alone: ``python -m benchmarks.quality --changes`` measures
# what each one is worth (model, train and input options of ``train_teacher``'s ``overrides``).
CHANGES: dict[str, dict[str, Any]] = {
    "codes_as_numbers": {"embed_codes": False},
    "zscore_inputs": {"encoding": "zscore"},
    "input_gate": {"gate_input": "inputs"},
    "wide_private_experts": {"task_input": 0},
    "unscaled_losses": {"normalize_losses": False, "uncertainty_lr": 0.002},
    "six_epochs": {"epochs": 6, "patience": 6},
}


def variant(name: str) -> dict[str, Any]:
    """An ablation variant: ``full``, ``no_<expert>``, ``sigmoid_gate``, ``adatt``, ``grad_surgery``, or
    one of ``CHANGES`` (``{"overrides": ...}``)."""
    if name == "full":
        return {}
    if name in CHANGES:
        return {"overrides": CHANGES[name]}
    if name.startswith("no_") and name[3:] in EXPERTS:
        return {"without": name[3:]}
    if name == "sigmoid_gate":
        return {"gate": "sigmoid"}
    if name in ("adatt", "grad_surgery"):
        return {name: True}
    raise ConfigError(f"unknown ablation variant {name!r}; use full, no_<expert> ({', '.join(EXPERTS)}), "
                      f"sigmoid_gate, adatt, grad_surgery or one of {sorted(CHANGES)}")


def train_teacher(settings: Settings, training_set: Path, out_root: Path, *, architecture: str = "ple",
                  gate: str | None = None, without: str | None = None, adatt: bool | None = None,
                  grad_surgery: bool | None = None, epochs: int | None = None, max_train_rows: int | None = None,
                  max_batches: int | None = None, device: str | None = None, seed: int | None = None,
                  overrides: dict[str, Any] | None = None, log: Log = print,
                  on_epoch: Callable[[dict[str, Any]], None] | None = None,
                  on_batch: Callable[[int, int, float], None] | None = None,
                  cluster: Cluster = SINGLE_PROCESS) -> dict[str, Any] | None:
    """Train one model; returns the summary also written to ``<run_dir>/metrics.json``.

    Under torchrun every rank calls this; only rank 0 scores the held-out months, writes the
    artifacts and returns the summary (the other ranks return ``None``)."""
    doc = teacher_config(settings)
    schema = read_schema(training_set)
    tasks = ModelSpec.from_feature_schema(schema, settings).tasks
    over = dict(overrides or {})
    inputs = {**(doc.get("inputs") or {}), **{k: over.pop(k) for k in INPUT_OPTIONS if k in over}}
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    mcfg = model_config(doc, architecture=architecture, gate=gate, **{k: v for k, v in over.items() if k in model_keys})
    tcfg = train_config(doc, epochs=epochs, adatt=adatt, grad_surgery=grad_surgery, max_batches=max_batches,
                        device=device, seed=seed, **{k: v for k, v in over.items() if k not in model_keys})
    max_rows = max_train_rows if max_train_rows is not None else doc.get("max_train_rows")

    train = load_split(training_set, "train", schema, tasks, max_rows)
    validation = load_split(training_set, "validation", schema, tasks)
    test = load_split(training_set, "test", schema, tasks)
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        validate(part, tasks, f"training set {name}")
    codes = [schema.columns.index(c) for c in schema.codes] if inputs.get("embed_codes", True) else []
    encoder = InputEncoder.fit(train.x, np.asarray(codes, np.int64), seed=tcfg.seed,
                               quantiles=inputs.get("encoding", "quantile") == "quantile")
    for part in (train, validation, test):
        encoder.transform_(part.x)
    spec = ModelSpec.from_feature_schema(schema, settings, code_max=encoder.code_max if codes else None)
    if without:
        spec = spec.without(without)
    identity = {"training_set": schema.version, "signature": spec.signature(), "model": dataclasses.asdict(mcfg),
                "train": {k: v for k, v in dataclasses.asdict(tcfg).items() if k not in ("epochs", "device")},
                "max_rows": max_rows, "inputs": inputs}
    run_dir = Path(out_root) / fingerprint(identity)
    log(f"{architecture} run {run_dir.name}: {len(spec.experts)} experts, {len(spec.tasks)} tasks, "
        f"{len(spec.codes.vocabularies)} code vocabularies embedded")
    coverage = nonzero_inputs(train, spec.expert_columns)
    dead = [k for k, v in coverage.items() if v == 0]
    if dead:
        raise ConfigError(f"expert input(s) {dead} are all zero on the training rows; check the feature schema")
    log(f"train {len(train):,} rows, validation {len(validation):,}, test {len(test):,}")

    ranking = tuple(t.name for t in settings.tasks if t.group)
    torch.manual_seed(tcfg.seed)
    model = build_model(spec, mcfg)
    trainer = Trainer(model, spec, mcfg, tcfg, run_dir, extra={"input_encoder": encoder.to_dict()},
                      ranking_tasks=ranking, cluster=cluster)
    fit = trainer.fit(train, validation, log=log, on_epoch=on_epoch, on_batch=on_batch)
    if not cluster.main:
        return None
    results: dict[str, Any] = {}
    for name, part in (("validation", validation), ("test", test)):
        scores, gates = predict(model, part, device=trainer.device)
        results[name] = evaluate(spec.tasks, part.y, scores, ranking)
        if name == "test":
            save_scores(run_dir / "test_scores.npz", part, scores)
            if gates is not None:
                results["gates"] = gate_summary(gates, spec.tasks, model.gate_names)
    summary = {
        "architecture": architecture, "run_dir": str(run_dir), "training_set": schema.version,
        "experts": list(spec.experts), "gate": mcfg.gate, "adatt": tcfg.adatt, "grad_surgery": tcfg.grad_surgery,
        "parameters": int(sum(p.numel() for p in model.parameters())), "rows": {
            "train": len(train), "validation": len(validation), "test": len(test)},
        "expert_input_nonzero": coverage, "best_epoch": fit["best"]["epoch"], "task_best": fit["task_best"],
        "history": fit["history"],
        **results,
    }
    artifact = {"format": 1, "signature": spec.signature(), "spec": spec, "model_config": dataclasses.asdict(mcfg),
                "input_encoder": encoder.to_dict(), "model": model.state_dict(), "metrics": summary["test"]}
    write_atomic(run_dir / "teacher.pt", lambda p: torch.save(artifact, p))
    write_atomic(run_dir / "metrics.json", lambda p: p.write_text(json.dumps(summary, indent=1, default=_json)))
    set_current(Path(out_root), run_dir.name)
    return summary


def save_scores(path: Path, part: TeacherData, scores: dict[str, np.ndarray]) -> None:
    """Each test row's scores per task with its customer, month and labels: what the comparison's
    paired bootstrap reads (``teacher.quality``)."""
    arrays = {"customer_id": part.customer_id, "month": np.asarray(part.month, dtype=str),
              **{f"score__{k}": v for k, v in scores.items()}, **{f"label__{k}": v for k, v in part.y.items()}}
    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:
            np.savez(f, **arrays)

    write_atomic(path, write)


def load_scores(path: Path) -> dict[str, np.ndarray]:
    if not Path(path).is_file():
        raise FinAIError(f"no test scores at {path}; re-run the training that should have written them")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _json(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")
