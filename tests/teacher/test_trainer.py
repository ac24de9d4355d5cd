"""The teacher's training loop: it learns, its checkpoints hold the full state, a resumed run is bit-identical."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from finai_models import metrics as M
from finai_models.teacher.data import TeacherData
from finai_models.teacher.model import ModelConfig, build_model
from finai_models.teacher.spec import ModelSpec
from finai_models.teacher.tasks import parse_tasks
from finai_models.teacher.trainer import CheckpointError, TrainConfig, Trainer, check_compatible, predict

N_FEATURES = 16
TASKS = parse_tasks({"a": "binary", "m": "multiclass:3", "r": "regression"})
MODEL_CFG = ModelConfig(width=32, task_hidden=32, tower_hidden=(32, 16))
TINY_CFG = ModelConfig(width=16, task_hidden=16, tower_hidden=(16, 8))


def make_data(n: int, seed: int, missing: float = 0.2) -> TeacherData:
    """A linear + interaction binary rule, a 3-class label from terciles, a linear regression target;
    ``missing`` of the binary labels are NaN."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    z = 1.5 * x[:, 0] - 1.2 * x[:, 1] + 1.0 * x[:, 2] * x[:, 3] + 0.3 * rng.standard_normal(n)
    a = (z > 0).astype(np.float32)
    a[rng.random(n) < missing] = np.nan
    s = x[:, 4] + x[:, 5]
    m = np.digitize(s, [-0.6, 0.6]).astype(np.float32)
    r = (x[:, 6] - 0.5 * x[:, 7] + 0.1 * rng.standard_normal(n)).astype(np.float32)
    return TeacherData(x, {"a": a, "m": m, "r": r})


def _spec() -> ModelSpec:
    return ModelSpec.dense(N_FEATURES, TASKS)


def _trainer(run_dir: Path, model_cfg: ModelConfig = TINY_CFG, seed: int = 0, spec: ModelSpec | None = None,
             **train) -> Trainer:
    spec = spec or _spec()
    torch.manual_seed(seed)
    model = build_model(spec, model_cfg)
    cfg = TrainConfig(**{"epochs": 1, "batch_size": 64, "seed": seed, "device": "cpu", "threads": 1, **train})
    return Trainer(model, spec, model_cfg, cfg, run_dir)


def _quiet(_: str) -> None:
    pass


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 3-epoch run on learnable data, shared by the tests that read its model and checkpoints."""
    run_dir = tmp_path_factory.mktemp("learn")
    train, val = make_data(1200, seed=0), make_data(400, seed=1)
    trainer = _trainer(run_dir, MODEL_CFG, epochs=3, batch_size=64, lr=3e-3, max_batches=10)
    result = trainer.fit(train, val, log=_quiet)
    return trainer, result, train, val, run_dir


# ---------------------------------------------------------------- learning


def test_learns_the_synthetic_tasks(trained):
    trainer, result, train, val, _ = trained
    scores, gates = predict(trainer.model, val)
    seen = ~np.isnan(val.y["a"])
    assert M.auc(val.y["a"][seen], scores["a"][seen]) > 0.75
    mae = np.abs(scores["r"] - val.y["r"]).mean()
    baseline = np.abs(val.y["r"] - np.nanmean(train.y["r"])).mean()
    assert mae < baseline
    assert len(result["history"]) == 3
    assert all(np.isfinite(h["train_loss"]) for h in result["history"])
    assert gates.shape == (len(val), len(TASKS), 8)


def test_predict_returns_probabilities(trained):
    trainer, _, _, val, _ = trained
    scores, _ = predict(trainer.model, val, batch_size=97)    # several batches, the last one partial
    assert set(scores) == {"a", "m", "r"}
    assert scores["a"].shape == (len(val),)
    assert ((scores["a"] >= 0) & (scores["a"] <= 1)).all()
    assert scores["m"].shape == (len(val), 3)
    assert (scores["m"] >= 0).all()
    np.testing.assert_allclose(scores["m"].sum(axis=1), 1.0, atol=1e-5)
    assert scores["r"].shape == (len(val),)
    assert scores["r"].std() > 0
    full, _ = predict(trainer.model, val)                    # batching does not change the scores
    np.testing.assert_allclose(full["a"], scores["a"], atol=1e-5)


def test_predict_restores_training_mode(trained):
    trainer, _, _, val, _ = trained
    trainer.model.train()
    try:
        predict(trainer.model, TeacherData(val.x[:5], {k: v[:5] for k, v in val.y.items()}))
        assert trainer.model.training
    finally:
        trainer.model.eval()


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_contents(trained):
    trainer, result, _, _, run_dir = trained
    assert (run_dir / "best.pt").is_file()
    state = torch.load(run_dir / "last.pt", weights_only=False)
    for key in ("model", "optimizer", "scheduler", "amp_scaler", "rng", "epoch", "history", "signature"):
        assert key in state, key
    assert state["epoch"] == 3
    assert len(state["history"]) == 3
    assert state["signature"] == _spec().signature()
    assert state["step"] == 30
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    best = torch.load(run_dir / "best.pt", weights_only=False)
    assert "optimizer" not in best and best["epoch"] == result["best"]["epoch"]
    # fit ends on the best epoch's weights
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(v, best["model"][k]), k


class _Interrupted(Exception):
    pass


def _stop_after(epoch: int):
    def on_epoch(record: dict) -> None:
        if record["epoch"] == epoch:
            raise _Interrupted
    return on_epoch


def test_resume_is_bit_identical(tmp_path):
    train, val = make_data(320, seed=2), make_data(96, seed=3)
    common = {"epochs": 3, "max_batches": 3}

    full = _trainer(tmp_path / "full", **common)
    full.fit(train, val, log=_quiet)

    # the same run killed after epoch 2 (last.pt is written before the epoch callback)
    cut = _trainer(tmp_path / "cut", **common)
    with pytest.raises(_Interrupted):
        cut.fit(train, val, log=_quiet, on_epoch=_stop_after(2))
    shutil.copytree(tmp_path / "cut", tmp_path / "resumed")
    torch.manual_seed(1234)        # a different global RNG state: the checkpoint must restore it
    np.random.seed(1234)

    epochs = []
    resumed = _trainer(tmp_path / "resumed", seed=0, **common)
    resumed.fit(train, val, log=_quiet, on_epoch=lambda r: epochs.append(r["epoch"]))

    assert epochs == [3], "the resumed run must train exactly the missing epoch"
    assert len(resumed.history) == 3
    for i in range(2):
        assert resumed.history[i] == cut.history[i]
    for a, b in zip(resumed.history, full.history, strict=True):
        assert a["train_loss"] == b["train_loss"]
        assert a["primary_score"] == b["primary_score"]
    last_full = torch.load(tmp_path / "full" / "last.pt", weights_only=False)
    last_resumed = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    assert last_full["model"].keys() == last_resumed["model"].keys()
    for k in last_full["model"]:
        assert torch.equal(last_full["model"][k], last_resumed["model"][k]), k
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    assert last_full["step"] == last_resumed["step"]


def test_finished_run_is_not_retrained(tmp_path):
    train, val = make_data(192, seed=4), make_data(64, seed=5)
    _trainer(tmp_path, max_batches=1).fit(train, val, log=_quiet)
    again = _trainer(tmp_path, max_batches=1)
    epochs = []
    result = again.fit(train, val, log=_quiet, on_epoch=epochs.append)
    assert epochs == [] and len(result["history"]) == 1


def test_architecture_mismatch_is_refused(tmp_path):
    train, val = make_data(192, seed=4), make_data(64, seed=5)
    wide = ModelConfig(width=64, task_hidden=16, tower_hidden=(16, 8))
    _trainer(tmp_path, wide, max_batches=1).fit(train, val, log=_quiet)

    narrow = ModelConfig(width=32, task_hidden=16, tower_hidden=(16, 8))
    with pytest.raises(CheckpointError, match=r"model_config\.width"):
        _trainer(tmp_path, narrow, max_batches=1).fit(train, val, log=_quiet)

    other_tasks = parse_tasks({"a": "binary", "m": "multiclass:4", "r": "regression"})
    spec = ModelSpec.dense(N_FEATURES, other_tasks)
    with pytest.raises(CheckpointError, match="tasks"):
        _trainer(tmp_path, wide, spec=spec, max_batches=1).fit(train, val, log=_quiet)

    fewer = _spec().without("perslay")
    with pytest.raises(CheckpointError, match="experts"):
        _trainer(tmp_path, wide, spec=fewer, max_batches=1).fit(train, val, log=_quiet)


def test_check_compatible_refuses_foreign_files(tmp_path):
    with pytest.raises(CheckpointError, match="not a FinAI teacher checkpoint"):
        check_compatible({"model": {}}, _spec(), TINY_CFG, tmp_path / "x.pt")


# ---------------------------------------------------------------- opt-in loss combiners


def test_adatt_and_grad_surgery_are_wired(tmp_path):
    train, val = make_data(640, seed=6), make_data(64, seed=7)
    common = {"epochs": 1, "max_batches": 3}
    plain = _trainer(tmp_path / "plain", **common)
    plain.fit(train, val, log=_quiet)
    adatt = _trainer(tmp_path / "adatt", adatt=True, **common)
    adatt.adatt.threshold = -1.0       # transfer whatever the (random-data) affinities' sign: this tests the wiring
    adatt.fit(train, val, log=_quiet)
    surgery = _trainer(tmp_path / "surgery", grad_surgery=True, **common)
    surgery.fit(train, val, log=_quiet)

    assert plain.adatt is None and plain.surgery is None
    assert adatt.adatt is not None and adatt.adatt.updates >= 1
    assert surgery.surgery is not None and surgery.surgery.projections >= 1

    base = plain.model.state_dict()
    for name, other in (("adatt", adatt), ("grad_surgery", surgery)):
        state = other.model.state_dict()
        assert any(not torch.equal(base[k], state[k]) for k in base), f"{name} changed nothing"
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_resume_continues_the_grad_surgery_random_stream(tmp_path):
    train, val = make_data(320, seed=8), make_data(64, seed=9)
    common = {"epochs": 3, "max_batches": 4, "grad_surgery": True}     # surgery is due at steps 0 and 10
    full = _trainer(tmp_path / "full", **common)
    full.fit(train, val, log=_quiet)
    cut = _trainer(tmp_path / "cut", **common)
    with pytest.raises(_Interrupted):
        cut.fit(train, val, log=_quiet, on_epoch=_stop_after(2))
    resumed = _trainer(tmp_path / "cut", **common)
    resumed.fit(train, val, log=_quiet)
    assert resumed.step == full.step == 12
    assert torch.equal(resumed.surgery.generator.get_state(), full.surgery.generator.get_state())
    assert resumed.surgery.projections == full.surgery.projections
