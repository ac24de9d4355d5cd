"""``PLETeacher``: the teacher as a small scikit-learn-like estimator for any tabular multi-task data.

    from finai_models import PLETeacher
    teacher = PLETeacher(tasks={"churn": "binary", "segment": "multiclass:4", "spend": "regression"})
    teacher.fit(X_train, y_train, X_val, y_val)      # X float [n, d]; y {task: [n]}, NaN = missing
    teacher.predict(X)         # {task: probabilities [n] / [n, K], or values [n]}
    teacher.gate_weights(X)    # {task: [n, experts]} - the layer-0 gate, i.e. the explanation

Without sequences, persistence diagrams or graphs every expert reads all columns and runs its
documented dense variant: Temporal treats column blocks as tokens, PersLay and HGCN become an MLP
and a hyperbolic MLP, LightGCN learns its own item table, DeepFM uses 32-column fields. Without
``X_val`` a seeded 10% of the training rows is held out to pick the best epoch.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from finai_models.errors import DataError
from finai_models.teacher.data import InputScaler, TeacherData, validate
from finai_models.teacher.model import ModelConfig, build_model
from finai_models.teacher.spec import EXPERTS, ModelSpec
from finai_models.teacher.tasks import parse_tasks
from finai_models.teacher.trainer import TrainConfig, Trainer, predict


class PLETeacher:
    def __init__(self, tasks: Mapping[str, str], *, experts: tuple[str, ...] = EXPERTS, architecture: str = "ple",
                 width: int = 64, gate: str = "softmax", extra_layers: int = 0, epochs: int = 10,
                 batch_size: int = 1024, lr: float = 2e-3, weight_decay: float = 1e-4, uncertainty: bool = True,
                 adatt: bool = False, grad_surgery: bool = False, device: str = "auto", seed: int = 0,
                 run_dir: str | Path | None = None, verbose: bool = False):
        self.tasks = parse_tasks(tasks)
        self.experts = tuple(experts)
        self.model_config = ModelConfig(architecture=architecture, width=width, gate=gate, extra_layers=extra_layers)
        self.train_config = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                                        uncertainty=uncertainty, adatt=adatt, grad_surgery=grad_surgery,
                                        device=device, seed=seed)
        self.run_dir, self.verbose = run_dir, verbose
        self.model_: torch.nn.Module | None = None
        self.history_: list[dict] = []

    def _data(self, X, y, what: str) -> TeacherData:
        x = np.array(X, dtype=np.float32, copy=True)
        labels = {k: np.asarray(v, dtype=np.float32) for k, v in (y or {}).items()}
        if not labels:   # prediction: no labels
            labels = {t.name: np.full(len(x), np.nan, np.float32) for t in self.tasks}
        data = TeacherData(x, labels)
        validate(data, self.tasks, what)
        return data

    def fit(self, X, y: Mapping[str, np.ndarray], X_val=None, y_val: Mapping[str, np.ndarray] | None = None
            ) -> PLETeacher:
        train = self._data(X, y, "y")
        if X_val is None:
            order = np.random.default_rng(self.train_config.seed).permutation(len(train))
            cut = max(1, len(train) // 10)
            held, kept = np.sort(order[:cut]), np.sort(order[cut:])
            val = TeacherData(train.x[held], {k: v[held] for k, v in train.y.items()})
            train = TeacherData(train.x[kept], {k: v[kept] for k, v in train.y.items()})
        else:
            val = self._data(X_val, y_val, "y_val")
        if val.x.shape[1] != train.x.shape[1]:
            raise DataError(f"X_val has {val.x.shape[1]} columns, X has {train.x.shape[1]}")
        self.scaler_ = InputScaler.fit(train.x, seed=self.train_config.seed)
        self.scaler_.transform_(train.x)
        self.scaler_.transform_(val.x)
        self.spec_ = ModelSpec.dense(train.x.shape[1], self.tasks, self.experts)
        torch.manual_seed(self.train_config.seed)
        self.model_ = build_model(self.spec_, self.model_config)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(self.run_dir) if self.run_dir else Path(tmp)
            log = print if self.verbose else (lambda _: None)
            result = Trainer(self.model_, self.spec_, self.model_config, self.train_config, run_dir).fit(
                train, val, log=log)
        self.history_ = result["history"]
        self.model_.eval()
        return self

    def _prepared(self, X) -> TeacherData:
        if self.model_ is None:
            raise DataError("this PLETeacher is not fitted yet; call fit() first")
        data = self._data(X, None, "X")
        if not len(data.x):
            raise DataError("X has no rows")
        if data.x.shape[1] != self.spec_.n_features:
            raise DataError(f"X has {data.x.shape[1]} columns; the teacher was fitted on {self.spec_.n_features}")
        self.scaler_.transform_(data.x)
        return data

    def predict(self, X) -> dict[str, np.ndarray]:
        return predict(self.model_, self._prepared(X))[0]

    @property
    def expert_names_(self) -> tuple[str, ...]:
        return tuple(getattr(self.model_, "gate_names", ()))

    def gate_weights(self, X) -> dict[str, np.ndarray]:
        """Per task, ``[n, experts]`` layer-0 gate weights in the order of ``expert_names_``."""
        _, gates = predict(self.model_, self._prepared(X))
        if gates is None:
            raise DataError(f"a {self.model_config.architecture} model has no gates")
        return {t.name: gates[:, i] for i, t in enumerate(self.tasks)}
