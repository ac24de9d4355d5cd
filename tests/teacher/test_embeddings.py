"""Code columns reach the teacher as embeddings, routed with their feature group, never as numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from finai_models.config import load_settings
from finai_models.phase0.schema import schema_for
from finai_models.teacher.data import InputEncoder
from finai_models.teacher.embeddings import CodeLayout, InputLayer
from finai_models.teacher.model import ModelConfig, build_model
from finai_models.teacher.spec import TASK_EXPERT, ModelSpec
from finai_serving.schema import code_vocabulary

LAG_FIELDS = ("amount", "mcc", "days", "hour")


def _name(group: str, i: int) -> str:
    if group == "demographics" and i < 2:
        return ("segment_code", "region_code")[i]
    if group == "txn_lag_tensor":
        return f"lag_{i // 4 + 1:03d}_{LAG_FIELDS[i % 4]}"
    if group == "gmm_clustering" and i == 0:
        return "gmm_cluster_id"
    return f"{group}__{i:03d}"


@pytest.fixture(scope="module")
def schema():
    settings = load_settings()
    names = {g.name: [_name(g.name, i) for i in range(g.dim)] for g in settings.feature_groups}
    columns = [c for group in names.values() for c in group]
    kinds = ["code" if c.endswith(("_code", "_id", "_mcc", "_hour")) else "continuous" for c in columns]
    normalizer = {"columns": columns, "kinds": kinds, "mean": [0.0] * len(columns), "std": [1.0] * len(columns),
                  "log_columns": []}
    return settings, schema_for(settings, names, "t", normalizer=normalizer)


def _spec(settings, doc, largest: int) -> tuple[ModelSpec, dict[str, int]]:
    """The spec with every declared code column embedded, its largest training index ``largest``."""
    index = {c: j for j, c in enumerate(doc.columns)}
    code_max = np.full(len(doc.columns), -1)
    code_max[[index[c] for c in doc.codes]] = largest
    return ModelSpec.from_feature_schema(doc, settings, code_max=code_max), index


def test_lag_slots_share_one_vocabulary_and_other_codes_have_their_own():
    assert code_vocabulary("lag_001_mcc") == code_vocabulary("lag_200_mcc") == "lag_mcc"
    assert code_vocabulary("lag_017_hour") == "lag_hour"
    assert code_vocabulary("segment_code") == "segment_code"


def test_every_code_column_reaches_an_embedding_routed_with_its_group(schema):
    settings, doc = schema
    codes = doc.codes
    spec, _ = _spec(settings, doc, 30)
    embedded = {doc.columns[j] for v in spec.codes.vocabularies for j in v.columns}
    assert embedded == set(codes)                                    # none left out
    assert {v.name for v in spec.codes.vocabularies} == set(codes.values())
    lag = next(v for v in spec.codes.vocabularies if v.name == "lag_mcc")
    assert len(lag.columns) == 200 and lag.pooled and lag.group == "txn_lag_tensor"
    slots = spec.codes.slots(spec.n_features)
    readers = {g.name: set(g.experts) for g in settings.feature_groups}
    for v in spec.codes.vocabularies:
        for expert, routed in spec.expert_columns.items():
            reads_group = expert in readers[v.group] or expert == TASK_EXPERT
            assert set(slots[v.name]) <= set(routed.tolist()) if reads_group else \
                not set(slots[v.name]) & set(routed.tolist()), (v.name, expert)
        for expert, routed in spec.expert_columns.items():     # the raw code value is routed nowhere
            assert not set(v.columns) & set(routed.tolist()), (v.name, expert)


def test_a_code_changes_the_output_only_through_its_embedding(schema):
    settings, doc = schema
    spec, index = _spec(settings, doc, 30)
    layer = InputLayer(spec.n_features, spec.codes).eval()
    x = torch.zeros(4, spec.n_features)
    x[:, index["segment_code"]] = torch.tensor([1.0, 2.0, 1.0, 3.0])
    out = layer(x)
    assert out.shape == (4, spec.input_width)
    assert torch.all(out[:, index["segment_code"]] == 0)            # the number itself is zeroed
    seg = spec.codes.slots(spec.n_features)["segment_code"]
    assert torch.equal(out[0, seg], out[2, seg]) and not torch.equal(out[0, seg], out[1, seg])


def test_pooled_slots_ignore_padding_and_order_of_the_same_transactions():
    layout = CodeLayout.build([f"lag_{i:03d}_mcc" for i in range(1, 6)], {f"lag_{i:03d}_mcc": "lag_mcc"
                                                                        for i in range(1, 6)}, np.full(5, 9))
    layer = InputLayer(5, layout).eval()
    a = layer(torch.tensor([[3.0, 7.0, 0.0, 0.0, 0.0]]))
    b = layer(torch.tensor([[7.0, 0.0, 3.0, 0.0, 0.0]]))              # same purchases, other slots and padding
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, layer(torch.tensor([[3.0, 8.0, 0.0, 0.0, 0.0]])))


def test_encoder_clips_unseen_codes_to_the_unknown_index():
    x = np.array([[1, 0.5], [4, 2.0], [2, 9.0]] * 10, np.float32)
    enc = InputEncoder.fit(x, np.array([0]))
    out = enc.transform_(np.array([[7, 1.0], [-1, 1.0], [3, 1.0]], np.float32))
    assert out[:, 0].tolist() == [0.0, 0.0, 3.0]


def test_models_train_with_embedded_codes(schema):
    settings, doc = schema
    spec, index = _spec(settings, doc, 5)
    x = torch.randn(8, spec.n_features)
    for c in doc.codes:
        x[:, index[c]] = torch.randint(0, 6, (8,)).float()
    for arch in ("mmoe", "shared_bottom"):
        model = build_model(spec, ModelConfig(architecture=arch))
        out = model(x)
        sum(o.float().sum() for o in out.logits).backward()
        grads = [p.grad for p in model.inputs.codes.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
