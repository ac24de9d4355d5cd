"""Distillation through Dagster: soft labels, month x task students with their blocking fidelity
check, promotion decisions in the audit log, and a bundle that an unpromoted month cannot get."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import lightgbm as lgb
import numpy as np
import pytest
import yaml

from finai_assets.defs.distill.assets import (
    champion,
    current_champion,
    promotion,
    soft_labels,
    student,
)
from finai_assets.defs.distill.checks import student_fidelity
from finai_assets.defs.resources import FinAIConfig
from finai_models.artifacts import ArtifactPaths
from finai_models.distill.config import distill_config
from finai_models.distill.inputs import SchemaMismatch, prepare_inputs
from finai_models.distill.students import train_student
from finai_models.errors import ConfigError
from finai_models.phase0.schema import SCHEMA_FILE, schema_for
from finai_models.teacher.data import read_schema
from finai_models.teacher.run import train_teacher
from finai_serving.audit import AuditLog, AuditTampered, load_or_create_key
from finai_serving.student import Student, StudentError

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

MONTH, NEXT, LATER = "2025-12", "2025-11", "2025-10"


def _materialize(instance, assets, partition, run_config=None, resources=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, partition_key=partition, instance=instance, raise_on_error=False,
                          resources={"finai": FinAIConfig(), **(resources or {})}, run_config=run_config)


TEACHER_CACHE = Path(tempfile.mkdtemp(prefix="finai-tiny-teacher-"))


def _teacher(settings, *months: str) -> None:
    """File the tiny teacher as the teacher of each month (trained once per session: the tiny
    training set and its config are the same in every test)."""
    trained = TEACHER_CACHE / "ple"
    if not trained.is_dir():
        train_teacher(settings, ArtifactPaths.of(settings).current_training_set(), trained, log=lambda _m: None)
    for month in months:
        shutil.copytree(trained, ArtifactPaths.of(settings).teacher_runs(month, "ple"))


def _students(settings, month: str) -> None:
    """Every task's student of ``month`` through the library (the asset path is tested on MONTH)."""
    cfg, paths = distill_config(settings), ArtifactPaths.of(settings)
    for t in cfg.tasks:
        train_student(cfg, t.name, paths.student_inputs(month), paths.students(month) / t.name,
                      log=lambda _m: None)


def _edit_distill(config_copy, **changes) -> None:
    doc = yaml.safe_load((config_copy / "distill.yaml").read_text())
    for path, value in changes.items():
        node = doc
        *parents, leaf = path.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = value
    (config_copy / "distill.yaml").write_text(yaml.safe_dump(doc))


def test_a_month_distils_promotes_and_bundles(tiny_env, instance):
    _teacher(tiny_env, MONTH, NEXT, LATER)
    result = _materialize(instance, [soft_labels], MONTH)
    assert result.success
    cfg = distill_config(tiny_env)
    routes = json.loads((ArtifactPaths.of(tiny_env).student_inputs(MONTH) / "inputs.json").read_text())["routing"]
    assert set(routes) == {t.name for t in cfg.tasks}

    for task in cfg.tasks:                                  # the month x task grid, each with its check
        result = _materialize(instance, [student, student_fidelity], f"{MONTH}|{task.name}")
        assert result.success, task.name
        (check,) = result.get_asset_check_evaluations()
        assert check.passed, (task.name, check.metadata)
        meta = result.asset_materializations_for_node("distill__student")[0].metadata
        assert meta["route"].value == routes[task.name]["route"].upper()
        assert "LightGBM (hard labels)" in meta["comparison"].value

    result = _materialize(instance, [promotion], MONTH)
    assert result.success
    decision = result.asset_materializations_for_node("distill__promotion")[0].metadata["decision"].value
    assert decision == "bootstrap"
    assert current_champion(tiny_env)["fidelity"] == {t.name: True for t in cfg.tasks}   # what is served
    result = _materialize(instance, [champion], None)
    meta = result.asset_materializations_for_node("distill__champion")[0].metadata
    assert (meta["month"].value, meta["audit_seq"].value) == (MONTH, 1)

    # challenger of the same quality: promoted; forced: recorded as forced
    assert _materialize(instance, [soft_labels], NEXT).success
    _students(tiny_env, NEXT)
    result = _materialize(instance, [promotion], NEXT)
    assert result.asset_materializations_for_node("distill__promotion")[0].metadata["decision"].value == "promote"
    forced = {"ops": {"distill__promotion": {"config": {"force": True, "reason": "quarter-end freeze"}}}}
    assert _materialize(instance, [promotion], NEXT, forced).success

    # a much weaker challenger (one stump per student), with the fidelity floor opened so that only
    # the champion comparison can stop it: rejected, naming the tasks
    _edit_distill(tiny_env.config_dir, lightgbm__n_estimators=1, lightgbm__num_leaves=2,
                  fidelity__tier1__binary__max_auc_gap=1.0, fidelity__tier1__binary__max_ece=1.0,
                  fidelity__tier1__multiclass__max_macro_f1_gap=1.0, fidelity__tier1__regression__max_mae_gap=9.0,
                  fidelity__tier1__regression__max_rmse_gap=9.0)
    assert _materialize(instance, [soft_labels], LATER).success
    _students(tiny_env, LATER)
    result = _materialize(instance, [promotion], LATER)
    meta = result.asset_materializations_for_node("distill__promotion")[0].metadata
    assert meta["decision"].value == "reject" and "vs champion" in meta["reasons"].value, meta["reasons"].value

    log = AuditLog(ArtifactPaths.of(tiny_env).registry() / "promotions.log",
                   load_or_create_key(ArtifactPaths.of(tiny_env).audit_key()))
    assert [r["decision"] for r in log.records()] == ["bootstrap", "promote", "forced", "reject"]
    assert log.verify() == 4
    assert "quarter-end freeze" in " ".join(log.records()[2]["reasons"])
    pointer = json.loads((log.path.parent / "CHAMPION.json").read_text())
    assert pointer["month"] == NEXT and pointer["audit_seq"] == 3            # the reject changed nothing
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join([lines[0], lines[1].replace('"promote"', '"reject"'), *lines[2:]]) + "\n")
    with pytest.raises(AuditTampered, match="line 2"):
        log.verify()


def test_a_student_trained_on_shuffled_soft_labels_fails_the_gate_and_blocks_the_bundle(tiny_env, instance):
    _edit_distill(tiny_env.config_dir, alpha=0.0, routing__binary__distill_auc=0.5)   # pure imitation
    _teacher(tiny_env, MONTH)
    assert _materialize(instance, [soft_labels], MONTH).success
    _students(tiny_env, MONTH)
    inputs = ArtifactPaths.of(tiny_env).student_inputs(MONTH)
    with np.load(inputs / "soft_train.npz") as soft:
        logits = dict(soft)
    logits["churn_signal"] = np.random.default_rng(0).permutation(logits["churn_signal"])
    np.savez(inputs / "soft_train.npz", **logits)

    result = _materialize(instance, [student, student_fidelity], f"{MONTH}|churn_signal")
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and "AUC gap" in check.metadata["tier1_failures"].value[0]
    result = _materialize(instance, [promotion], MONTH)
    assert result.asset_materializations_for_node("distill__promotion")[0].metadata["decision"].value == "reject"
    result = _materialize(instance, [champion], None)             # nothing to serve a month with
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no promoted champion yet" in failure.event_specific_data.error.to_string()
    forced = {"ops": {"distill__promotion": {"config": {"force": True, "reason": "try anyway"}}}}
    result = _materialize(instance, [promotion], MONTH, forced)
    meta = result.asset_materializations_for_node("distill__promotion")[0].metadata
    assert meta["decision"].value == "reject"
    assert "churn_signal: fidelity gate failed: AUC gap" in meta["reasons"].value, meta["reasons"].value
    assert "force does not override the fidelity gate" in meta["reasons"].value


def test_a_student_on_fewer_rows_and_screened_columns_passes_and_selects_its_own_columns(tiny_env, instance):
    _edit_distill(tiny_env.config_dir, tasks={"churn_signal": {"max_train_rows": 1500, "max_features": 60}})
    _teacher(tiny_env, MONTH)
    assert _materialize(instance, [soft_labels], MONTH).success
    result = _materialize(instance, [student, student_fidelity], f"{MONTH}|churn_signal")
    (check,) = result.get_asset_check_evaluations()
    assert result.success and check.passed, check.metadata
    folder = ArtifactPaths.of(tiny_env).students(MONTH) / "churn_signal"
    meta = json.loads((folder / "student.json").read_text())
    assert meta["train_rows"] == 1500 and len(meta["features"]) == 60 and len(meta["columns"]) > 1000
    linear = meta["columns"][[t.name for t in tiny_env.tasks].index("churn_signal")]   # conftest._labels
    assert linear in meta["features"], "screening dropped the column the label is linear in"

    x = np.load(ArtifactPaths.of(tiny_env).student_inputs(MONTH) / "x_test.npy")[:200]                # every column
    served = Student.load(folder)
    position = {c: i for i, c in enumerate(meta["columns"])}
    booster = lgb.Booster(model_file=str(folder / "model.txt"))
    raw = booster.predict(x[:, [position[c] for c in meta["features"]]], raw_score=True) + meta["raw_offset"][0]
    np.testing.assert_allclose(served.raw(x), raw, rtol=1e-6)
    with pytest.raises(StudentError, match=r"input must be \[rows, \d+\]"):
        served.predict(x[:, :60])                                     # the selected width is not the input


def test_bad_input_gets_a_clear_error(tiny_env, instance, tmp_path):
    result = _materialize(instance, [soft_labels], MONTH)                 # no teacher for the month
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "no finished training run" in failure.event_specific_data.error.to_string()

    cfg = distill_config(tiny_env)
    with pytest.raises(ConfigError, match="'telepathy' is not in tasks.yaml"):
        train_student(cfg, "telepathy", tmp_path, tmp_path / "x")
    _edit_distill(tiny_env.config_dir, tasks={"telepathy": {"num_leaves": 7}})
    with pytest.raises(ConfigError, match=r"overrides \['telepathy'\], which tasks.yaml does not define"):
        distill_config(tiny_env)

    _edit_distill(tiny_env.config_dir, tasks={})
    _teacher(tiny_env, MONTH)
    training_set = ArtifactPaths.of(tiny_env).current_training_set()
    schema = read_schema(training_set)
    renamed = schema.columns[3]
    names = {g.name: ["renamed_column" if c == renamed else c for c in schema.raw_columns[g.start:g.end]]
             for g in schema.groups}
    schema_for(tiny_env, names, schema.version, log_columns=schema.log_columns).save(training_set / SCHEMA_FILE)
    with pytest.raises(SchemaMismatch, match=f"1 missing \\['{renamed}'\\], 1 extra \\['renamed_column'\\]"):
        prepare_inputs(distill_config(tiny_env), training_set,
                       ArtifactPaths.of(tiny_env).teacher_run(MONTH, "ple") / "teacher.pt", tmp_path)
