"""What the teacher is built from: tasks, expert routing and static side data, as one object.

``ModelSpec`` is the architecture's input contract. It is saved in every checkpoint, so a model
can be rebuilt without the Phase-0 state, and its ``signature`` names exactly what differs when a
checkpoint from another architecture is loaded. Two constructors: ``from_feature_schema`` (the
routing of ``configs/feature_groups.yaml`` over a training set's columns, with the fitted LightGCN
item table and the MCC hierarchy graph) and ``dense`` (any tabular dataset: every expert reads
every column and runs its dense variant).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from finai_models.config import Settings
from finai_models.errors import ConfigError
from finai_models.teacher.embeddings import CodeLayout
from finai_models.teacher.experts.base import ExpertInput, Field
from finai_models.teacher.tasks import TaskSpec, from_config
from finai_serving.schema import FeatureSchema

EXPERTS = ("deepfm", "temporal", "hgcn", "perslay", "lightgcn", "causal", "optimal_transport")
TASK_EXPERT = "task_tower"   # routing key of the per-task experts' input (demographics, holdings, GMM)


@dataclass
class ModelSpec:
    n_features: int
    tasks: tuple[TaskSpec, ...]
    experts: tuple[str, ...]
    expert_columns: dict[str, np.ndarray]     # expert (and TASK_EXPERT) -> int64 column indices into x
    expert_inputs: dict[str, ExpertInput]
    sequence_shape: tuple[int, int] | None = None
    diagram_shape: tuple[int, int] | None = None
    columns: tuple[str, ...] = ()
    notes: dict[str, Any] = field(default_factory=dict)
    codes: CodeLayout = field(default_factory=CodeLayout)

    @property
    def input_width(self) -> int:
        """Columns of the input layer's matrix: x, then the code embeddings (what routing indexes)."""
        return self.n_features + self.codes.out_dim

    def __post_init__(self) -> None:
        unknown = [e for e in self.experts if e not in EXPERTS]
        if unknown:
            raise ConfigError(f"unknown expert(s) {unknown}; the teacher's experts are {EXPERTS}")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ConfigError(f"duplicate task names in {names}")
        for name, idx in self.expert_columns.items():
            if len(idx) == 0:
                raise ConfigError(f"expert {name!r} is routed to no columns")
            if idx.min() < 0 or idx.max() >= self.input_width:
                raise ConfigError(f"expert {name!r} is routed to column {int(idx.max())}, but the input has "
                                  f"{self.input_width} columns (a stale feature schema?)")

    def signature(self) -> dict[str, Any]:
        """Everything that fixes parameter shapes; equal signatures load each other's weights."""
        return {
            "n_features": self.n_features,
            "tasks": [[t.name, t.kind, t.out_dim] for t in self.tasks],
            "experts": list(self.experts),
            "expert_dims": {e: int(len(ix)) for e, ix in sorted(self.expert_columns.items())},
            "sequence_shape": list(self.sequence_shape or ()), "diagram_shape": list(self.diagram_shape or ()),
            "codes": [[v.name, len(v.columns), v.size] for v in self.codes.vocabularies],
        }

    def without(self, expert: str) -> ModelSpec:
        """The same spec with one shared expert removed (the ablation's "remove each expert")."""
        if expert not in self.experts:
            raise ConfigError(f"cannot remove expert {expert!r}: the spec has {self.experts}")
        kept = tuple(e for e in self.experts if e != expert)
        return ModelSpec(self.n_features, self.tasks, kept,
                         {k: v for k, v in self.expert_columns.items() if k != expert},
                         {k: v for k, v in self.expert_inputs.items() if k != expert},
                         self.sequence_shape, self.diagram_shape, self.columns, dict(self.notes), self.codes)

    @staticmethod
    def dense(n_features: int, tasks: tuple[TaskSpec, ...], experts: tuple[str, ...] = EXPERTS) -> ModelSpec:
        everything = np.arange(n_features, dtype=np.int64)
        spec = ExpertInput(n_features, ())
        return ModelSpec(n_features, tasks, tuple(experts), {e: everything for e in (*experts, TASK_EXPERT)},
                         {e: spec for e in experts})

    @staticmethod
    def from_feature_schema(schema: FeatureSchema, settings: Settings, experts: tuple[str, ...] = EXPERTS,
                            code_max: np.ndarray | None = None) -> ModelSpec:
        """Routing from the schema; with ``code_max`` (the input encoder's largest training index per
        column) every declared code column is embedded and its embedding routed with its group."""
        columns = list(schema.columns)
        group_of = schema.group_of()
        codes = CodeLayout() if code_max is None else CodeLayout.build(columns, dict(schema.codes), code_max,
                                                                          group_of)
        coded = set(codes.code_columns)
        slots = codes.slots(len(columns))
        known = set(schema.group_names)
        routed: dict[str, list[str]] = {}
        for group in settings.feature_groups:
            for expert in group.experts:
                if group.name not in known:
                    raise ConfigError(f"expert {expert!r} is routed to feature group {group.name!r}, which the "
                                      f"training set's feature schema does not have (it has {sorted(known)}); "
                                      "rebuild training/training_set or fix configs/feature_groups.yaml")
                routed.setdefault(expert, []).append(group.name)
        missing = [e for e in (*experts, TASK_EXPERT) if e not in routed]
        if missing:
            raise ConfigError(f"no feature group in configs/feature_groups.yaml routes to expert(s) {missing}")
        seq, dgm = schema.side.sequence_shape, schema.side.diagram_shape
        expert_columns, expert_inputs = {}, {}
        for expert in (*experts, TASK_EXPERT):
            index, fields = [], []
            for g in routed[expert]:
                cols = [j for j, c in enumerate(columns) if group_of[c] == g and j not in coded]
                if cols:
                    fields.append(Field(g, len(index), len(index) + len(cols), tuple(columns[j] for j in cols)))
                    index += cols
                for v in codes.vocabularies:     # each vocabulary its own field (DeepFM gives it its own k-vector)
                    if v.group == g:
                        fields.append(Field(f"{g}/{v.name}", len(index), len(index) + v.out_dim,
                                            tuple(f"{v.name}#{i}" for i in range(v.out_dim))))
                        index += slots[v.name].tolist()
            expert_columns[expert] = np.asarray(index, np.int64)
            if expert != TASK_EXPERT:
                expert_inputs[expert] = ExpertInput(len(index), tuple(fields), seq, dgm,
                                                    _extras(expert, tuple(fields), schema, settings))
        return ModelSpec(len(columns), tuple(from_config(t) for t in settings.tasks), tuple(experts),
                         expert_columns, expert_inputs, seq, dgm, tuple(columns),
                         {"training_set": schema.version, "state_version": schema.state_version}, codes)


def _extras(expert: str, fields: tuple[Field, ...], schema: FeatureSchema, settings: Settings) -> dict[str, Any]:
    """Static side data: the fitted LightGCN item table, the MCC hierarchy graph."""
    if expert == "lightgcn" and schema.state_version:
        from finai_models.phase0.state import state_root

        path = state_root(settings) / schema.state_version / "graph_collaborative.npz"
        if path.is_file():
            with np.load(path) as z:
                return {"item_embeddings": z["item_vectors"].astype(np.float32)}
    if expert == "hgcn":
        from finai_models.teacher.experts.hyperbolic import mcc_hierarchy_graph

        graph = mcc_hierarchy_graph(settings.mcc, fields)
        return {"hierarchy": graph} if graph is not None else {}
    return {}
