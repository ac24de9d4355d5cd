"""Task specifications for the teacher: what each head predicts and which loss trains it.

The same ``TaskSpec`` serves the Phase-0 tasks (from ``configs/tasks.yaml``) and any tabular
dataset given to the public API as ``{"name": "binary" | "multiclass:K" | "regression"}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from finai_models.config import Task
from finai_models.errors import ConfigError

KINDS = ("binary", "multiclass", "regression")
DEFAULT_LOSS = {"binary": "bce", "multiclass": "ce", "regression": "huber"}
LOSSES = {"binary": ("bce", "focal"), "multiclass": ("ce",), "regression": ("huber", "mse")}


@dataclass(frozen=True)
class TaskSpec:
    """One head: ``out_dim`` logits (1 for binary and regression, K for multiclass)."""

    name: str
    kind: str
    classes: int = 1
    loss: str = ""
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    weight: float = 1.0
    group: str = ""
    top_k: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"task {self.name!r}: unknown task type {self.kind!r}; expected one of {KINDS}")
        if self.kind == "multiclass" and self.classes < 2:
            raise ConfigError(f"task {self.name!r}: multiclass needs at least 2 classes, got {self.classes}")
        if not self.loss:
            object.__setattr__(self, "loss", DEFAULT_LOSS[self.kind])
        if self.loss not in LOSSES[self.kind]:
            raise ConfigError(f"task {self.name!r}: loss {self.loss!r} does not fit a {self.kind} task; "
                              f"use one of {LOSSES[self.kind]}")

    @property
    def out_dim(self) -> int:
        return self.classes if self.kind == "multiclass" else 1


def parse_task(name: str, text: str) -> TaskSpec:
    """``"binary"``, ``"regression"`` or ``"multiclass:K"`` (the public API's task notation)."""
    kind, _, classes = str(text).partition(":")
    if kind == "multiclass":
        if not classes.isdigit():
            raise ConfigError(f"task {name!r}: write a multiclass task as 'multiclass:K' with K classes, got {text!r}")
        return TaskSpec(name, kind, int(classes))
    if classes or kind not in KINDS:
        raise ConfigError(f"task {name!r}: unknown task type {text!r}; expected 'binary', 'multiclass:K' "
                          "or 'regression'")
    return TaskSpec(name, kind)


def parse_tasks(tasks: Mapping[str, str]) -> tuple[TaskSpec, ...]:
    if not tasks:
        raise ConfigError("no tasks given")
    return tuple(parse_task(n, t) for n, t in tasks.items())


def from_config(task: Task) -> TaskSpec:
    """The teacher's view of a task of ``configs/tasks.yaml``."""
    return TaskSpec(task.name, task.type, task.classes or 1, task.loss,
                    focal_alpha=task.focal_alpha if task.focal_alpha is not None else 0.25,
                    group=task.type, top_k=task.top_k)
