"""The training service end to end: Pipes materialization, kill-and-resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from finai_assets.defs.resources import FinAIConfig, pipes_client
from finai_assets.defs.teacher.assets import ple
from finai_assets.defs.teacher.checks import experts_receive_input, teacher_beats_chance
from finai_models.artifacts import ArtifactPaths, current
from finai_models.teacher.run import teacher_config

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

MONTH = "2025-12"


def _materialize(instance, *assets) -> dg.ExecuteInProcessResult:
    return dg.materialize(list(assets), partition_key=MONTH, instance=instance, raise_on_error=False, resources={
        "finai": FinAIConfig(), "pipes_subprocess_client": pipes_client()})


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.asset_materializations_for_node("teacher__ple")
    return {k: v.value for k, v in event.metadata.items()}


def test_killed_training_resumes_from_last_checkpoint(tiny_env, instance):
    root = ArtifactPaths.of(tiny_env).teacher_runs(MONTH, "ple")
    proc = subprocess.Popen([sys.executable, "-m", "finai_models.teacher.service", "--month", MONTH],
                            env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(root.glob("*/last.pt")):
        assert proc.poll() is None, "the service ended before its first checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    (checkpoint,) = root.glob("*/last.pt")
    done = torch.load(checkpoint, weights_only=False)["epoch"]
    epochs = teacher_config(tiny_env)["train"]["epochs"]
    assert 1 <= done < epochs, f"killed after epoch {done}: not mid-run"

    result = _materialize(instance, ple)
    assert result.success
    meta = _metadata(result)
    assert meta["epochs_this_run"] == epochs - done     # resumed, not restarted
    assert meta["epochs_trained"] == epochs
    history = json.loads((current(root) / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == list(range(1, epochs + 1))
    assert meta["test_mean_binary_auc"] > 0.55          # the labels are learnable (chance: 0.5)
    assert "gate_weights" in meta and "data:image/png;base64" in meta["gate_weights"]


def test_teacher_checks_pass_and_a_dead_expert_stops_training(tiny_env, instance):
    checks = [experts_receive_input, teacher_beats_chance]

    def materialize() -> dg.ExecuteInProcessResult:
        return dg.materialize([ple, *checks], partition_key=MONTH, instance=instance, raise_on_error=False,
                              resources={"finai": FinAIConfig(), "pipes_subprocess_client": pipes_client()})

    result = materialize()
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert evaluations == {"experts_receive_input": True, "teacher_beats_chance": True}

    # planted: PersLay's routed groups and its diagrams are all zero in the training split
    folder = ArtifactPaths.of(tiny_env).current_training_set()
    table = pq.read_table(folder / "train.parquet")
    dead = [c for c in table.column_names if c.startswith(("tda_global__", "tda_local__"))]
    for name in dead:
        table = table.set_column(table.column_names.index(name), name, pa.array(np.zeros(table.num_rows, np.float32)))
    pq.write_table(table, folder / "train.parquet")
    np.save(folder / "train.diagrams.npy", np.zeros_like(np.load(folder / "train.diagrams.npy")))
    result = materialize()
    assert not result.success
    logged = " ".join(e.user_message or "" for e in instance.all_logs(result.run_id))
    assert "expert input(s) ['perslay'" in logged and "all zero" in logged    # the service's own error, relayed


@pytest.mark.parametrize(("args", "message"), [
    (["--without", "telepathy"], "cannot remove expert 'telepathy'"),
    (["--training-set", "/nonexistent"], "no training set at /nonexistent"),
])
def test_service_bad_input_gets_a_clear_error(tiny_env, args, message):
    out = subprocess.run([sys.executable, "-m", "finai_models.teacher.service", "--month", MONTH, *args],
                         env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert message in out.stderr
