"""A Mamba encoder of each customer's 12-month history, trained self-supervised on training months.

The original system fed Mamba one-step "sequences" on a separate GPU job and joined the result
by id (zeros when missing). Here every customer present at t is encoded from its own monthly
series t-11 .. t on the CPU, so the group is defined for everyone and reads nothing after t.

Inputs per month: the ``SERIES`` after a signed log1p (spend, counts and amounts are heavy
tailed), standardised with mean/std fitted on the present months of the training sample,
zeroed where the month is absent, plus the ``present`` flag. The model is an input embedding,
one pre-norm residual Mamba block (``ssm.MambaBlock``) and a small head that predicts month
s+1's standardised series from the prefix up to s (MSE over months present at s+1). The
encoding is the 50-dim residual stream (``d_model = dim``) at the last step, month t: the
state summarising the whole history that the model uses to forecast the next month.
"""

from __future__ import annotations

import duckdb
import numpy as np
import torch
from torch import nn

from finai_models.phase0.groups.base import FeatureGroupModel
from finai_models.phase0.inputs import SERIES, MonthInputs
from finai_models.phase0.ssm import MambaBlock, torch_session

D_INNER, D_STATE, D_CONV, DT_RANK = 64, 8, 3, 4
EPOCHS, BATCH, LR = 2, 512, 3e-3
INFER_BATCH = 4096


class NextMonthModel(nn.Module):
    """``[b, l, features] -> [b, l, d_model]`` hidden states, and the next-month forecast from them."""

    def __init__(self, n_inputs: int, d_model: int, n_targets: int):
        super().__init__()
        self.embed = nn.Linear(n_inputs, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.block = MambaBlock(d_model, D_INNER, D_STATE, D_CONV, DT_RANK)
        self.head = nn.Sequential(nn.LayerNorm(d_model), nn.Linear(d_model, 64), nn.SiLU(), nn.Linear(64, n_targets))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        h = self.embed(inputs)
        return h + self.block(self.norm(h))

    def loss(self, inputs: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Masked MSE of forecasting month s+1's standardised series from months <= s."""
        forecast = self.head(self(inputs))[:, :-1]
        target = inputs[:, 1:, :-1]
        mask = present[:, 1:, None].float()
        return (((forecast - target) ** 2) * mask).sum() / (mask.sum() * target.shape[-1]).clamp(min=1)


class MambaTemporal(FeatureGroupModel):
    """50-dim Mamba encoding of the monthly history t-11 .. t (see the module docstring)."""

    name = "mamba_temporal"

    def __init__(self, settings, dim):
        super().__init__(settings, dim)
        self.mean = np.zeros(len(SERIES), np.float32)
        self.std = np.ones(len(SERIES), np.float32)
        self.model: NextMonthModel | None = None
        self.fit_losses: list[float] = []   # loss before training, then the mean loss of each epoch

    def _inputs(self, series: np.ndarray, present: np.ndarray) -> np.ndarray:
        """``[n, l, len(SERIES) + 1]``: standardised signed-log series (0 where absent) and the present flag."""
        z = (np.sign(series) * np.log1p(np.abs(series)) - self.mean) / self.std
        z = np.clip(z, -5, 5) * present[..., None]
        return np.concatenate([z, present[..., None]], axis=-1).astype(np.float32)

    def fit(self, train: list[MonthInputs], con: duckdb.DuckDBPyConnection) -> None:
        rng = np.random.default_rng(self.seed)
        limit = int(self.settings.phase0.fit_sample_customers)
        rows = [np.sort(rng.choice(x.n, size=min(limit, x.n), replace=False)) for x in train]
        series = np.concatenate([x.series[r] for x, r in zip(train, rows, strict=True)])
        present = np.concatenate([x.present[r] for x, r in zip(train, rows, strict=True)])
        logged = np.sign(series[present]) * np.log1p(np.abs(series[present]))
        self.mean = logged.mean(axis=0).astype(np.float32)
        self.std = np.maximum(logged.std(axis=0), 1e-3).astype(np.float32)
        inputs, mask = torch.from_numpy(self._inputs(series, present)), torch.from_numpy(present)
        with torch_session(self.seed):
            self.model = NextMonthModel(inputs.shape[-1], self.dim, len(SERIES))
            optimizer = torch.optim.Adam(self.model.parameters(), lr=LR)
            with torch.no_grad():
                self.fit_losses = [_epoch(self.model, inputs, mask, torch.arange(len(inputs)))]
            for _ in range(EPOCHS):
                self.fit_losses.append(_epoch(self.model, inputs, mask, torch.randperm(len(inputs)), optimizer))
        self.model.eval()

    def transform(self, x: MonthInputs, con: duckdb.DuckDBPyConnection) -> np.ndarray:
        out = np.zeros((x.n, self.dim), np.float32)
        with torch_session(self.seed), torch.inference_mode():
            for start in range(0, x.n, INFER_BATCH):
                stop = start + INFER_BATCH
                inputs = torch.from_numpy(self._inputs(x.series[start:stop], x.present[start:stop]))
                out[start:stop] = self.model(inputs)[:, -1].numpy()
        return out

    def state_dict(self):
        weights = {f"model.{k}": v.detach().numpy().copy() for k, v in self.model.state_dict().items()}
        return {"mean": self.mean, "std": self.std, **weights}

    def load_state_dict(self, state):
        self.mean, self.std = state["mean"], state["std"]
        self.model = NextMonthModel(len(SERIES) + 1, self.dim, len(SERIES))
        self.model.load_state_dict({k[6:]: torch.from_numpy(np.array(v)) for k, v in state.items()
                                    if k.startswith("model.")})
        self.model.eval()

    def column_names(self):
        return [f"mamba_{i:02d}" for i in range(self.dim)]


def _epoch(model: NextMonthModel, inputs: torch.Tensor, mask: torch.Tensor, order: torch.Tensor,
           optimizer: torch.optim.Optimizer | None = None) -> float:
    """One pass over ``inputs`` in ``order`` (an Adam step per batch when ``optimizer`` is given): the mean loss."""
    total = 0.0
    for start in range(0, len(order), BATCH):
        batch = order[start:start + BATCH]
        loss = model.loss(inputs[batch], mask[batch])
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        total += loss.item() * len(batch)
    return total / len(order)
