"""The PLE teacher and its baselines: output contract, gates, task isolation, gradients and config errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finai_models.errors import ConfigError
from finai_models.phase0.schema import schema_for
from finai_models.teacher.experts.base import ExpertInput
from finai_models.teacher.model import MMoE, ModelConfig, SharedBottom, build_model
from finai_models.teacher.spec import EXPERTS, TASK_EXPERT, ModelSpec
from finai_models.teacher.tasks import parse_task, parse_tasks
from finai_serving.schema import FeatureSchema

N_FEATURES = 20
TASKS = parse_tasks({"a": "binary", "m": "multiclass:4", "r": "regression"})
OUT_DIMS = [1, 4, 1]
SMALL = {"width": 16, "task_hidden": 32, "tower_hidden": (16, 8)}


def _spec(experts: tuple[str, ...] = EXPERTS) -> ModelSpec:
    return ModelSpec.dense(N_FEATURES, TASKS, experts)


def _model(spec: ModelSpec | None = None, seed: int = 0, **cfg) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model(spec or _spec(), ModelConfig(**{**SMALL, **cfg}))


def _x(batch: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, N_FEATURES, generator=torch.Generator().manual_seed(seed))


def _check_logits(logits: list[torch.Tensor], batch: int) -> None:
    assert len(logits) == len(TASKS)
    for logit, dim in zip(logits, OUT_DIMS, strict=True):
        assert logit.shape == (batch, dim)
        assert torch.isfinite(logit).all()


def _check_gates(gates: torch.Tensor, batch: int, options: int) -> None:
    assert gates.shape == (batch, len(TASKS), options)
    assert (gates >= 0).all()
    torch.testing.assert_close(gates.sum(-1), torch.ones(batch, len(TASKS)), atol=1e-5, rtol=0)


# ---------------------------------------------------------------- PLE output contract


@pytest.mark.parametrize("gate", ["softmax", "sigmoid"])
@pytest.mark.parametrize("batch", [1, 7])
def test_ple_shapes_and_gates(gate, batch):
    model = _model(gate=gate).eval()
    with torch.no_grad():
        out = model(_x(batch))
    _check_logits(out.logits, batch)
    _check_gates(out.gates, batch, 1 + len(EXPERTS))
    assert model.gate_names == ("task", *EXPERTS)
    assert out.regularizer.dim() == 0 and torch.isfinite(out.regularizer)


def test_sigmoid_gate_differs_from_softmax_gate():
    # identical parameters (same seed, the gate kind changes no shape): only the gate function differs
    x = _x(5)
    with torch.no_grad():
        soft = _model(gate="softmax").eval()(x).gates
        sig = _model(gate="sigmoid").eval()(x).gates
    assert not torch.allclose(soft, sig, atol=1e-4)


def test_gates_depend_on_the_input():
    model = _model().eval()
    with torch.no_grad():
        gates = model(_x(6)).gates
    assert (gates.std(dim=0) > 0).any(), "the layer-0 gate ignores x"


def test_perturbing_a_private_expert_changes_only_its_task():
    model = _model().eval()
    x = _x(9)
    with torch.no_grad():
        before = model(x)
        model.task_experts.w1[0].add_(torch.randn_like(model.task_experts.w1[0]))
        after = model(x)
    assert not torch.allclose(before.logits[0], after.logits[0], atol=1e-6)
    for i in (1, 2):
        assert torch.equal(before.logits[i], after.logits[i]), f"task {i} read task 0's private expert"
    # task 0's gate scores its own private expert's output; no other task's gate reads it
    assert torch.equal(before.gates[:, 1:], after.gates[:, 1:])
    assert not torch.equal(before.gates[:, 0], after.gates[:, 0])


def test_perturbing_a_shared_expert_changes_every_task():
    model = _model().eval()
    x = _x(9)
    with torch.no_grad():
        before = model(x)
        for p in model.experts["deepfm"].parameters():
            p.add_(0.5 * torch.randn_like(p))
        after = model(x)
    for i in range(len(TASKS)):
        assert not torch.allclose(before.logits[i], after.logits[i], atol=1e-6)


@pytest.mark.parametrize("extra_layers", [1, 2])
def test_extra_extraction_layers(extra_layers):
    model = _model(extra_layers=extra_layers).eval()
    assert len(model.layers) == extra_layers
    with torch.no_grad():
        out = model(_x(4))
    _check_logits(out.logits, 4)
    _check_gates(out.gates, 4, 1 + len(EXPERTS))


def test_extra_layers_change_the_output():
    x = _x(4)
    with torch.no_grad():
        plain = _model(extra_layers=0).eval()(x).logits[0]
        deeper = _model(extra_layers=1).eval()(x).logits[0]
    assert not torch.allclose(plain, deeper)


def test_removing_an_expert():
    spec = _spec().without("perslay")
    assert "perslay" not in spec.experts and "perslay" not in spec.expert_columns
    model = _model(spec).eval()
    assert "perslay" not in model.gate_names and "perslay" not in model.experts
    assert model.gate_names == ("task", *(e for e in EXPERTS if e != "perslay"))
    with torch.no_grad():
        out = model(_x(3))
    _check_logits(out.logits, 3)
    _check_gates(out.gates, 3, len(EXPERTS))     # 1 private + 6 shared
    with pytest.raises(ConfigError, match="perslay"):
        spec.without("perslay")


@pytest.mark.parametrize("cfg", [{}, {"extra_layers": 2}, {"gate": "sigmoid"}, {"architecture": "mmoe"},
                                 {"architecture": "shared_bottom"}], ids=lambda c: str(c) or "ple")
def test_every_parameter_gets_a_finite_gradient(cfg):
    cfg = {**cfg, **({"bottom_hidden": (32,)} if "architecture" in cfg else {})}
    model = _model(**cfg).train()
    out = model(_x(8))
    (sum(logit.sum() for logit in out.logits) + out.regularizer).backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None]
    assert not dead, f"parameters without a gradient: {dead}"
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p.grad).all()]
    assert not bad, f"non-finite gradients: {bad}"
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert not zero, f"parameters with an all-zero gradient: {zero}"


def test_batch_of_one_in_train_mode():
    model = _model().train()
    out = model(_x(1))
    _check_logits(out.logits, 1)
    _check_gates(out.gates, 1, 1 + len(EXPERTS))
    (sum(logit.sum() for logit in out.logits) + out.regularizer).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---------------------------------------------------------------- baselines


@pytest.mark.parametrize("batch", [1, 6])
def test_mmoe_shapes(batch):
    model = _model(architecture="mmoe", bottom_hidden=(32,), mmoe_experts=8).eval()
    assert isinstance(model, MMoE)
    with torch.no_grad():
        out = model(_x(batch))
    _check_logits(out.logits, batch)
    _check_gates(out.gates, batch, 8)
    assert model.gate_names == tuple(f"mlp_{i}" for i in range(8))
    assert float(out.regularizer) == 0.0


@pytest.mark.parametrize("batch", [1, 6])
def test_shared_bottom_shapes(batch):
    model = _model(architecture="shared_bottom", bottom_hidden=(32,)).eval()
    assert isinstance(model, SharedBottom)
    with torch.no_grad():
        out = model(_x(batch))
    _check_logits(out.logits, batch)
    assert out.gates is None
    assert model.gate_names == ()


# ---------------------------------------------------------------- configuration errors


def test_unknown_expert_name():
    with pytest.raises(ConfigError, match="wavelet"):
        ModelSpec.dense(N_FEATURES, TASKS, ("deepfm", "wavelet"))


@pytest.mark.parametrize("index", [np.arange(N_FEATURES + 1), np.array([-1, 0, 1])], ids=["past-end", "negative"])
def test_expert_columns_out_of_range(index):
    columns = {"deepfm": index.astype(np.int64), TASK_EXPERT: np.arange(N_FEATURES)}
    with pytest.raises(ConfigError, match="deepfm"):
        ModelSpec(N_FEATURES, TASKS, ("deepfm",), columns, {"deepfm": ExpertInput(len(index), ())})


def test_expert_routed_to_no_columns():
    columns = {"deepfm": np.array([], np.int64), TASK_EXPERT: np.arange(N_FEATURES)}
    with pytest.raises(ConfigError, match="no columns"):
        ModelSpec(N_FEATURES, TASKS, ("deepfm",), columns, {"deepfm": ExpertInput(1, ())})


def test_duplicate_task_names():
    with pytest.raises(ConfigError, match="duplicate"):
        ModelSpec.dense(N_FEATURES, (TASKS[0], TASKS[0]))


def test_model_config_errors():
    with pytest.raises(ConfigError, match="'x'"):
        ModelConfig(architecture="x")
    with pytest.raises(ConfigError, match="relu"):
        ModelConfig(gate="relu")


@pytest.mark.parametrize("text", ["multiclass", "ordinal", "multiclass:1", "binary:2", "multiclass:x"])
def test_parse_task_errors_name_the_task(text):
    with pytest.raises(ConfigError, match="'t'"):
        parse_task("t", text)


def test_parse_task_values():
    spec = parse_task("seg", "multiclass:5")
    assert (spec.kind, spec.classes, spec.out_dim, spec.loss) == ("multiclass", 5, 5, "ce")
    assert parse_task("y", "regression").out_dim == 1
    with pytest.raises(ConfigError, match="no tasks"):
        parse_tasks({})


# ---------------------------------------------------------------- routing from a feature schema


def _schema(settings, drop: str | None = None, per_group: int = 2, log_columns: tuple[str, ...] = ()
            ) -> FeatureSchema:
    names = {g.name: [f"{g.name}_{i}" for i in range(per_group)] for g in settings.feature_groups if g.name != drop}
    return schema_for(settings, names, "test", log_columns=log_columns)


def test_feature_schema_missing_a_routed_group(settings):
    schema = _schema(settings, drop="merchant_hierarchy")
    with pytest.raises(ConfigError, match="merchant_hierarchy") as err:
        ModelSpec.from_feature_schema(schema, settings)
    assert "hgcn" in str(err.value)


def test_feature_schema_routing(settings):
    # a log copy sits after every source column and belongs to its source column's group
    schema = _schema(settings, log_columns=("demographics_0",))
    spec = ModelSpec.from_feature_schema(schema, settings)
    cols = schema.columns
    assert cols[-1] == "demographics_0_log"
    assert spec.n_features == len(cols)

    def routed(expert: str) -> set[str]:
        return {cols[j] for j in spec.expert_columns[expert]}

    def group_columns(*names: str) -> set[str]:
        return {c for c in cols if c.rsplit("_", 1)[0] in names} | (
            {"demographics_0_log"} if "demographics" in names else set())

    assert routed(TASK_EXPERT) == group_columns(*(g.name for g in settings.feature_groups
                                                  if TASK_EXPERT in g.experts))
    assert routed("perslay") == group_columns("tda_global", "tda_local")
    assert routed("hgcn") == group_columns("merchant_hierarchy", "mcc_top30_multihot")
    assert spec.expert_inputs["perslay"].dim == 4
    assert [f.group for f in spec.expert_inputs["perslay"].fields] == ["tda_global", "tda_local"]
    assert len(spec.tasks) == len(settings.tasks)
