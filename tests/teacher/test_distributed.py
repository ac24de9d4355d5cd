"""Data-parallel training: gradient averaging and the replica guard, then torchrun under the asset."""

from __future__ import annotations

import json

import dagster as dg
import pytest
import torch
import torch.multiprocessing as mp
import yaml

from finai_assets.defs.resources import FinAIConfig, pipes_client
from finai_assets.defs.teacher.assets import ple
from finai_models.artifacts import ArtifactPaths
from finai_models.teacher.distributed import Cluster, ReplicaDivergence
from finai_models.teacher.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.slow          # a Dagster run, a server or a subprocess: `make test-fast` skips it

MONTH = "2025-12"


def _worker(rank: int, store: str, results: str) -> None:
    cluster = Cluster(rank=rank, world=2, local_rank=rank, local_world=2)
    cluster.start(init_method=f"file://{store}")
    try:
        p = torch.nn.Parameter(torch.zeros(3))
        q = torch.nn.Parameter(torch.zeros(2))               # no gradient on rank 1: counts as zero
        p.grad = torch.full((3,), float(rank + 1))
        q.grad = torch.ones(2) * 4 if rank == 0 else None
        cluster.average_gradients([p, q])
        cluster.assert_in_sync([p, q], torch.device("cpu"))  # identical parameters: passes
        skip = cluster.any(rank == 1, torch.device("cpu"))    # one rank's bad loss skips the step everywhere
        if rank == 1:
            with torch.no_grad():
                q[0] += 1e-6
        try:
            cluster.assert_in_sync([p, q], torch.device("cpu"))
            diverged = ""
        except ReplicaDivergence as exc:
            diverged = str(exc)
        with open(f"{results}.{rank}", "w") as f:
            json.dump({"p": p.grad.tolist(), "q": q.grad.tolist(), "skip": skip, "diverged": diverged}, f)
    finally:
        cluster.stop()


def test_gradients_are_averaged_and_diverged_replicas_are_detected(tmp_path, monkeypatch):
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(tmp_path / "result")), nprocs=2, join=True)
    for rank in (0, 1):
        got = json.loads((tmp_path / f"result.{rank}").read_text())
        assert got["p"] == [1.5, 1.5, 1.5] and got["q"] == [2.0, 2.0]
        assert got["skip"] is True
        assert "replicas diverged" in got["diverged"]


def test_adatt_is_refused_with_more_than_one_process(tiny_env):
    from finai_models.errors import ConfigError

    with pytest.raises(ConfigError, match="adaTT and GradSurgery"):
        Trainer(torch.nn.Linear(1, 1), None, None, TrainConfig(adatt=True), ArtifactPaths.of(tiny_env).root,
                cluster=Cluster(rank=0, world=2))


def test_teacher_asset_trains_data_parallel_through_torchrun(tiny_env, config_copy, instance):
    teacher = yaml.safe_load((config_copy / "teacher.yaml").read_text())
    teacher["service"] = {"processes": 2}
    teacher["train"]["epochs"] = 2
    (config_copy / "teacher.yaml").write_text(yaml.safe_dump(teacher))

    result = dg.materialize([ple], partition_key=MONTH, instance=instance, raise_on_error=False, resources={
        "finai": FinAIConfig(), "pipes_subprocess_client": pipes_client()})
    assert result.success
    (event,) = result.asset_materializations_for_node("teacher__ple")
    meta = {k: v.value for k, v in event.metadata.items()}
    assert meta["epochs_this_run"] == 2                     # one Pipes report per epoch: rank 0 only
    history = json.loads((ArtifactPaths.of(tiny_env).teacher_run(MONTH, "ple") / "metrics.json").read_text())["history"]
    assert [(h["processes"], h["rows_per_process"]) for h in history] == [(2, 18 * 64)] * 2  # 2400 // 128 batches
    assert meta["test_mean_binary_auc"] > 0.55
