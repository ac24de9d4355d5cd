"""The training service end to end: Pipes materialization, kill-and-resume, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import dagster as dg
import pytest
import torch

from finai_assets.defs.resources import FinAIConfig
from finai_assets.defs.teacher.assets import ple
from finai_assets.defs.teacher.checks import experts_receive_input, teacher_beats_chance
from finai_models.teacher.run import current_run
from finai_models.teacher.service import runs_root

MONTH = "2025-12"


def _materialize(instance, *assets) -> dg.ExecuteInProcessResult:
    return dg.materialize(list(assets), partition_key=MONTH, instance=instance, raise_on_error=False, resources={
        "finai": FinAIConfig(), "pipes_subprocess_client": dg.PipesSubprocessClient()})


def _metadata(result: dg.ExecuteInProcessResult) -> dict:
    (event,) = result.asset_materializations_for_node("teacher__ple")
    return {k: v.value for k, v in event.metadata.items()}


def test_killed_training_resumes_from_last_checkpoint(tiny_env, instance):
    root = runs_root(tiny_env, MONTH, "ple")
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
    assert 1 <= done < 4, f"killed after epoch {done}: not mid-run"

    result = _materialize(instance, ple)
    assert result.success
    meta = _metadata(result)
    assert meta["epochs_this_run"] == 4 - done          # resumed, not restarted
    assert meta["epochs_trained"] == 4
    history = json.loads((current_run(root) / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert meta["test_mean_binary_auc"] > 0.6
    assert "gate_weights" in meta and "data:image/png;base64" in meta["gate_weights"]


def test_teacher_checks_pass_and_catch_a_dead_expert(tiny_env, instance):
    result = _materialize(instance, ple)
    assert result.success
    run_dir = current_run(runs_root(tiny_env, MONTH, "ple"))

    def check(spec) -> bool:
        out = dg.materialize([ple, experts_receive_input, teacher_beats_chance], partition_key=MONTH,
                             instance=instance, selection=dg.AssetSelection.checks(spec),
                             resources={"finai": FinAIConfig(), "pipes_subprocess_client": dg.PipesSubprocessClient()},
                             raise_on_error=False)
        (evaluation,) = out.get_asset_check_evaluations()
        return evaluation.passed

    assert check(experts_receive_input) and check(teacher_beats_chance)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics["expert_input_nonzero"]["perslay"] = 0.0           # planted: PersLay fed zeros
    (run_dir / "metrics.json").write_text(json.dumps(metrics))
    assert not check(experts_receive_input)


@pytest.mark.parametrize(("args", "message"), [
    (["--without", "telepathy"], "cannot remove expert 'telepathy'"),
    (["--training-set", "/nonexistent"], "no training set at /nonexistent"),
])
def test_service_bad_input_gets_a_clear_error(tiny_env, args, message):
    out = subprocess.run([sys.executable, "-m", "finai_models.teacher.service", "--month", MONTH, *args],
                         env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert message in out.stderr
