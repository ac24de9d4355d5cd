"""``PLETeacher``: the teacher as a small scikit-learn-like estimator for any tabular multi-task data.

    from finai_models import PLETeacher
    teacher = PLETeacher(tasks={"churn": "binary", "segment": "multiclass:4", "spend": "regression"},
                         random_state=0)
    teacher.fit(X_train, y_train, X_val, y_val)      # X float [n, d], NaN allowed; y {task: [n]}, NaN = missing
    teacher.predict(X)         # {task: probabilities [n] / [n, K], or values [n]}
    teacher.gate_weights(X)    # {task: [n, experts]} - the layer-0 gate, i.e. the explanation

Missing values: NaN in X is allowed (infinite values are not). Every column that has NaN in the
training X gets a 0/1 "was missing" indicator column appended (``missing_columns_`` lists them),
in fit and in every later ``predict``/``gate_weights``, and the value itself is encoded as the
median's score (0); so the model can tell a missing value from a median one. A NaN in a column
that had none in training is read as the median, without an indicator.

Training stops early: after each epoch (at most ``epochs``) the validation rows are scored, and
after ``patience`` epochs without a better score training stops and the best epoch's weights are
restored (``best_epoch_``, ``history_``). Without ``X_val`` a seeded 10% of the training rows is
held out for this. ``random_state`` seeds everything (torch, numpy, the held-out split): the same
value on the same data gives the same predictions; None draws a fresh seed at every fit.

Without sequences, persistence diagrams or graphs every expert reads all columns and runs its
documented dense variant: Temporal is a Transformer over per-column feature tokens (no column
order is assumed), PersLay and HGCN become an MLP and a hyperbolic MLP, LightGCN learns its own
item table, DeepFM uses 32-column fields.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from finai_models.errors import DataError
from finai_models.teacher.data import InputEncoder, TeacherData, validate
from finai_models.teacher.model import ModelConfig, build_model
from finai_models.teacher.spec import EXPERTS, ModelSpec
from finai_models.teacher.tasks import parse_tasks
from finai_models.teacher.trainer import TrainConfig, Trainer, predict


class PLETeacher:
    def __init__(self, tasks: Mapping[str, str], *, experts: tuple[str, ...] = EXPERTS, architecture: str = "ple",
                 width: int = 64, gate: str = "softmax", extra_layers: int = 0, epochs: int = 30,
                 patience: int = 3, batch_size: int = 1024, lr: float = 2e-3, weight_decay: float = 1e-4,
                 uncertainty: bool = True, adatt: bool = False, grad_surgery: bool = False, device: str = "auto",
                 random_state: int | None = None, run_dir: str | Path | None = None, verbose: bool = False):
        self.tasks = parse_tasks(tasks)
        self.experts = tuple(experts)
        self.random_state = random_state
        self.model_config = ModelConfig(architecture=architecture, width=width, gate=gate, extra_layers=extra_layers)
        # the seed is set at fit from random_state
        self.train_config = TrainConfig(epochs=epochs, patience=patience, batch_size=batch_size, lr=lr,
                                        weight_decay=weight_decay, uncertainty=uncertainty, adatt=adatt,
                                        grad_surgery=grad_surgery, device=device)
        self.run_dir, self.verbose = run_dir, verbose
        self.model_: torch.nn.Module | None = None
        self.history_: list[dict] = []

    def _data(self, X, y, what: str) -> TeacherData:
        x = np.array(X, dtype=np.float32, copy=True)
        labels = {k: np.asarray(v, dtype=np.float32) for k, v in (y or {}).items()}
        if not labels:   # prediction: no labels
            labels = {t.name: np.full(len(x), np.nan, np.float32) for t in self.tasks}
        data = TeacherData(x, labels)
        validate(data, self.tasks, what, allow_nan=True)
        return data

    def _with_indicators(self, x: np.ndarray) -> np.ndarray:
        """``x`` with one 0/1 column per ``missing_columns_`` appended (1 where that column is NaN)."""
        return np.hstack([x, np.isnan(x[:, self.missing_columns_]).astype(np.float32)])

    def fit(self, X, y: Mapping[str, np.ndarray], X_val=None, y_val: Mapping[str, np.ndarray] | None = None
            ) -> PLETeacher:
        """Train on ``X, y``, early-stopped on ``X_val, y_val`` (or a held-out 10%); returns ``self``."""
        seed = self.random_state if self.random_state is not None else int(np.random.default_rng().integers(2**31))
        cfg = dataclasses.replace(self.train_config, seed=seed)
        train = self._data(X, y, "X, y")
        self.n_features_in_ = train.x.shape[1]
        self.missing_columns_ = np.flatnonzero(np.isnan(train.x).any(axis=0))
        if X_val is None:
            order = np.random.default_rng(seed).permutation(len(train))
            cut = max(1, len(train) // 10)
            held, kept = np.sort(order[:cut]), np.sort(order[cut:])
            val = TeacherData(train.x[held], {k: v[held] for k, v in train.y.items()})
            train = TeacherData(train.x[kept], {k: v[kept] for k, v in train.y.items()})
        else:
            val = self._data(X_val, y_val, "X_val, y_val")
            if val.x.shape[1] != self.n_features_in_:
                raise DataError(f"X_val has {val.x.shape[1]} columns, X has {self.n_features_in_}")
        train.x, val.x = self._with_indicators(train.x), self._with_indicators(val.x)
        self.encoder_ = InputEncoder.fit(train.x, seed=seed)
        self.encoder_.transform_(train.x)
        self.encoder_.transform_(val.x)
        self.spec_ = ModelSpec.dense(train.x.shape[1], self.tasks, self.experts)
        torch.manual_seed(seed)
        self.model_ = build_model(self.spec_, self.model_config)
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(self.run_dir) if self.run_dir else Path(tmp)
            log = print if self.verbose else (lambda _: None)
            result = Trainer(self.model_, self.spec_, self.model_config, cfg, run_dir).fit(train, val, log=log)
        self.history_ = result["history"]
        self.best_epoch_: int = result["best"]["epoch"]
        self.model_.eval()
        return self

    def _prepared(self, X) -> TeacherData:
        if self.model_ is None:
            raise DataError("this PLETeacher is not fitted yet; call fit() first")
        data = self._data(X, None, "X")
        if not len(data.x):
            raise DataError("X has no rows")
        if data.x.shape[1] != self.n_features_in_:
            raise DataError(f"X has {data.x.shape[1]} columns; the teacher was fitted on {self.n_features_in_}")
        data.x = self.encoder_.transform_(self._with_indicators(data.x))
        return data

    def predict(self, X) -> dict[str, np.ndarray]:
        """Per task: probabilities ``[n]`` (binary), class probabilities ``[n, K]`` or values ``[n]``."""
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
