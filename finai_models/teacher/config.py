"""``configs/teacher.yaml``: the teacher's model and training options, its baselines and the ablation.

The ``model`` and ``train`` sections are generated from ``ModelConfig`` and ``TrainConfig``, so a
new option of either is a valid key at once and a misspelt one fails naming the closest option.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from pydantic import Field, create_model

from finai_models.config import Settings
from finai_models.config_base import ConfigModel, load_model
from finai_models.errors import ConfigError
from finai_models.teacher.model import ModelConfig
from finai_models.teacher.trainer import TrainConfig

INPUT_OPTIONS = ("encoding", "embed_codes")


def _section(cls: type, name: str) -> type[ConfigModel]:
    """A model with ``cls``'s fields and defaults (a tuple field reads a YAML list)."""
    hints = typing.get_type_hints(cls)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is tuple:
            hint = list[typing.get_args(hint)[0]]
        fields[f.name] = (hint, f.default)
    return create_model(name, __base__=ConfigModel, **fields)


ModelSection = _section(ModelConfig, "ModelSection")
TrainSection = _section(TrainConfig, "TrainSection")


class Inputs(ConfigModel):
    encoding: str = "quantile"
    embed_codes: bool = True


class Service(ConfigModel):
    processes: int = 1


class Baselines(ConfigModel):
    lightgbm: dict[str, Any]


class Ablation(ConfigModel):
    epochs: int
    max_train_rows: int
    variants: list[str]


class TeacherFile(ConfigModel):
    model: ModelSection = Field(default_factory=ModelSection)         # type: ignore[valid-type]
    inputs: Inputs = Field(default_factory=Inputs)
    train: TrainSection = Field(default_factory=TrainSection)         # type: ignore[valid-type]
    service: Service = Field(default_factory=Service)
    max_train_rows: int | None = None
    baselines: Baselines
    ablation: Ablation


def teacher_config(settings: Settings) -> dict[str, Any]:
    """``teacher.yaml`` as written (keys left out stay out, so run fingerprints do not move)."""
    path = settings.config_dir / "teacher.yaml"
    doc = load_model(path, TeacherFile)
    if doc.inputs.encoding not in ("quantile", "zscore"):
        raise ConfigError(f"{path}: inputs.encoding must be quantile or zscore")
    return doc.model_dump(exclude_unset=True)
