"""Training loop with full-state checkpoints: kill it at any point and it resumes at the last epoch.

Every epoch writes ``last.pt`` atomically with the model, optimizer, LR scheduler, AMP grad
scaler, loss-weighting and adaTT state, every RNG (python, numpy, torch, CUDA), the epoch history
and the best score so far; the shuffling order is a pure function of (seed, epoch), so a resumed
run sees the same batches as an uninterrupted one. The best epoch by ``primary_score`` on the
validation months is kept as ``best.pt``. AMP (float16 + GradScaler) runs on CUDA; the experts
keep their numerically delicate parts (Sinkhorn, NOTEARS, hyperbolic maps) in float32. Under
torchrun the same loop runs data-parallel (``distributed.Cluster``): each rank trains on its share
of every batch, and rank 0 evaluates and writes the checkpoints.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from finai_models.artifacts import write_atomic
from finai_models.errors import ConfigError, FinAIError
from finai_models.teacher.data import TeacherData
from finai_models.teacher.distributed import SINGLE_PROCESS, Cluster
from finai_models.teacher.evaluate import evaluate, primary
from finai_models.teacher.losses import (
    AdaTT,
    FixedWeighting,
    GradSurgery,
    UncertaintyWeighting,
    groups_of,
    prior_losses,
    task_losses,
)
from finai_models.teacher.model import ModelConfig
from finai_models.teacher.spec import ModelSpec

FORMAT = 1


class CheckpointError(FinAIError):
    """A checkpoint that does not fit the model being built."""


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30                # the most epochs; early stopping usually ends sooner
    patience: int = 3               # epochs without a better validation score before stopping
    plateau_factor: float = 0.5     # the learning rate is multiplied by this after an epoch without improvement
    batch_size: int = 2048
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.3        # of the first epoch
    clip: float = 5.0
    seed: int = 42
    device: str = "auto"            # auto | cpu | cuda
    amp: bool | None = None         # None: on where CUDA is used
    uncertainty: bool = True
    uncertainty_lr: float = 0.05    # Kendall log-variances learn at their own rate, fast enough to move
    normalize_losses: bool = True   # divide each task loss by its prior loss (losses.prior_losses)
    adatt: bool = False
    grad_surgery: bool = False
    eval_rows: int = 50_000         # validation rows scored after each epoch
    max_batches: int | None = None  # per epoch (smoke tests)
    threads: int = 2


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FinAIError("device 'cuda' was asked for, but torch sees no CUDA device")
    return torch.device(name)


def predict(model: nn.Module, data: TeacherData, batch_size: int = 1024, device: torch.device | None = None,
            logits: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Per-task scores (probabilities for classification; raw logits with ``logits=True``) and the
    layer-0 gate weights [n, T, E].

    Batches of 1024 keep the temporaries well under glibc's largest heap-served block (32 MiB); at
    8192 each was a fresh mmap zeroed by the kernel: 2,377 rows/s against 4,626 on 2 idle cores."""
    device = device or next(model.parameters()).device
    tasks = model.spec.tasks
    scores: dict[str, list[np.ndarray]] = {t.name: [] for t in tasks}
    gates: list[np.ndarray] = []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for lo in range(0, len(data), batch_size):
            x, side, _ = data.batch(np.arange(lo, min(lo + batch_size, len(data))), device)
            out = model(x, side)
            for t, logit in zip(tasks, out.logits, strict=True):
                logit = logit.float()
                s = (logit if t.kind == "multiclass" else logit[:, 0]) if logits else \
                    torch.sigmoid(logit[:, 0]) if t.kind == "binary" else \
                    torch.softmax(logit, -1) if t.kind == "multiclass" else logit[:, 0]
                scores[t.name].append(s.cpu().numpy())
            if out.gates is not None:
                gates.append(out.gates.float().cpu().numpy())
    model.train(was_training)
    return {k: np.concatenate(v) for k, v in scores.items()}, (np.concatenate(gates) if gates else None)


class Trainer:
    def __init__(self, model: nn.Module, spec: ModelSpec, model_cfg: ModelConfig, cfg: TrainConfig,
                 run_dir: Path, extra: dict[str, Any] | None = None, ranking_tasks: tuple[str, ...] = (),
                 cluster: Cluster = SINGLE_PROCESS):
        if cluster.active and (cfg.adatt or cfg.grad_surgery):
            raise ConfigError("adaTT and GradSurgery read per-process task gradients; run those ablations with "
                              "one process (no torchrun)")
        self.model, self.spec, self.model_cfg, self.cfg = model, spec, model_cfg, cfg
        self.run_dir = Path(run_dir)
        self.extra = extra or {}             # saved with every checkpoint (input scaler, provenance)
        self.ranking_tasks = ranking_tasks
        self.cluster = cluster
        self.device = cluster.place(resolve_device(cfg.device))
        self.amp = cfg.amp if cfg.amp is not None else self.device.type == "cuda"
        self.weighting = (UncertaintyWeighting(spec.tasks) if cfg.uncertainty else FixedWeighting(spec.tasks))
        self.model.to(self.device)
        self.weighting.to(self.device)
        decay = [p for n, p in model.named_parameters() if p.ndim > 1]
        no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
        weighting = list(self.weighting.parameters())
        self.optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                            {"params": no_decay, "weight_decay": 0.0},
                                            {"params": weighting, "weight_decay": 0.0, "lr": cfg.uncertainty_lr}],
                                           lr=cfg.lr)
        self.params = decay + no_decay + weighting
        cluster.broadcast(self.params)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.device.type == "cuda",
                                           init_scale=1024, growth_interval=2000)
        self.shared = [p for n, p in model.named_parameters() if n.startswith("experts.")]
        self.adatt = AdaTT(len(spec.tasks)) if cfg.adatt else None
        self.surgery = GradSurgery(groups_of(spec.tasks), interval=10, seed=cfg.seed) if cfg.grad_surgery else None
        self.epoch, self.step, self.history, self.best = 0, 0, [], {"epoch": -1, "score": -math.inf}
        self.task_best: dict[str, dict[str, float]] = {}   # task -> its best validation epoch and score
        self.lr_scale = 1.0
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None

    # --- checkpoints ------------------------------------------------------------------------
    def _state(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "signature": self.spec.signature(), "spec": self.spec,
            "model_config": asdict(self.model_cfg), "train_config": asdict(self.cfg), "extra": self.extra,
            "model": self.model.state_dict(), "weighting": self.weighting.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "amp_scaler": self.scaler.state_dict(), "adatt": self.adatt.state_dict() if self.adatt else None,
            "surgery": self.surgery.state_dict() if self.surgery else None,
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
            "epoch": self.epoch, "step": self.step, "history": self.history, "best": self.best,
            "task_best": self.task_best, "lr_scale": self.lr_scale,
        }

    def _resume(self) -> bool:
        path = self.run_dir / "last.pt"
        if not path.is_file():
            return False
        state = torch.load(path, map_location=self.device, weights_only=False)
        check_compatible(state, self.spec, self.model_cfg, path)
        self.model.load_state_dict(state["model"])
        self.weighting.load_state_dict(state["weighting"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["amp_scaler"])
        if self.adatt and state["adatt"]:
            self.adatt.load_state_dict(state["adatt"])
        if self.surgery and state.get("surgery"):
            self.surgery.load_state_dict(state["surgery"])
        rng = state["rng"]
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.set_rng_state(rng["torch"].cpu())
        if rng["cuda"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        self.epoch, self.step, self.history, self.best = state["epoch"], state["step"], state["history"], state["best"]
        self.task_best, self.lr_scale = state["task_best"], state["lr_scale"]
        if self.cluster.rank:                # rank 0's streams were saved; the others draw their own dropout
            torch.manual_seed(self.cfg.seed + 7919 * self.cluster.rank + self.epoch)
        return True

    def _save(self, name: str, state: dict[str, Any]) -> Path:
        path = self.run_dir / name
        write_atomic(path, lambda tmp: torch.save(state, tmp))
        return path

    # --- training ---------------------------------------------------------------------------
    def fit(self, train: TeacherData, val: TeacherData, log: Callable[[str], None] = print,
            on_epoch: Callable[[dict[str, Any]], None] | None = None,
            on_batch: Callable[[int, int, float], None] | None = None) -> dict[str, Any]:
        """Train until ``patience`` epochs pass without a better validation score (or ``epochs``), then
        load the best epoch's weights. Returns the epoch history, the best epoch and each task's best."""
        torch.set_num_threads(max(1, self.cfg.threads // self.cluster.local_world))
        n_batches = max(1, len(train) // self.cfg.batch_size)
        if self.cfg.max_batches:
            n_batches = min(n_batches, self.cfg.max_batches)
        warmup = max(1, int(self.cfg.warmup_frac * n_batches))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: min((s + 1) / warmup, 1.0) * self.lr_scale)
        if self.cfg.normalize_losses:
            self.weighting.set_scale(prior_losses(self.spec.tasks, train.y))
        if self._resume():
            log(f"resumed from {self.run_dir / 'last.pt'} after epoch {self.epoch} (step {self.step})")
        else:
            random.seed(self.cfg.seed)
            np.random.seed(self.cfg.seed)
            torch.manual_seed(self.cfg.seed + self.cluster.rank)
        eval_rows = np.arange(min(len(val), self.cfg.eval_rows))
        val_subset = TeacherData(val.x[eval_rows], {k: v[eval_rows] for k, v in val.y.items()},
                                 {k: v[eval_rows] for k, v in val.side.items()})
        while self.epoch < self.cfg.epochs and not self._patience_spent():
            started = time.perf_counter()
            loss = self._epoch(train, n_batches, on_batch)
            self.cluster.assert_in_sync(self.params, self.device)
            if not self.cluster.main:        # rank 0 evaluates and checkpoints; the others wait for it
                self.epoch += 1
                self.cluster.barrier()
                self.lr_scale, self.best = self.cluster.share((self.lr_scale, self.best))
                continue
            scores, _ = predict(self.model, val_subset, device=self.device)
            result = evaluate(self.spec.tasks, val_subset.y, scores, self.ranking_tasks)
            self.epoch += 1
            seconds = time.perf_counter() - started
            improved = result["primary_score"] > self.best["score"]
            record = {"epoch": self.epoch, "train_loss": loss, "seconds": round(seconds, 2),
                      "samples_per_s": round(n_batches * self.cfg.batch_size / seconds, 1),
                      "processes": self.cluster.world, "lr": self.cfg.lr * self.lr_scale,
                      "rows_per_process": n_batches * len(self.cluster.shard(np.arange(self.cfg.batch_size))),
                      **{k: v for k, v in result.items() if k != "tasks"},
                      "task_primary": {t.name: primary(t, result["tasks"][t.name]) for t in self.spec.tasks},
                      "uncertainty_weights": self.weighting.weights().detach().cpu().tolist()}
            self.history.append(record)
            for name, value in record["task_primary"].items():
                if math.isfinite(value) and value > self.task_best.get(name, {}).get("score", -math.inf):
                    self.task_best[name] = {"epoch": self.epoch, "score": value}
            if improved:
                self.best = {"epoch": self.epoch, "score": result["primary_score"]}
                self._save("best.pt", {k: v for k, v in self._state().items()
                                       if k not in ("optimizer", "scheduler", "amp_scaler", "rng")})
            else:
                self.lr_scale *= self.cfg.plateau_factor
            self._save("last.pt", self._state())
            log(f"epoch {self.epoch}/{self.cfg.epochs}: loss {loss:.4f}, val primary {result['primary_score']:.4f}, "
                f"mean AUC {result['mean_binary_auc']:.4f} ({seconds:.0f} s)" + ("" if improved else ", no better"))
            if on_epoch:
                on_epoch(record)
            self.cluster.barrier()
            self.lr_scale, self.best = self.cluster.share((self.lr_scale, self.best))   # every rank stops together
        if not self.cluster.main:
            return {"history": [], "best": self.best, "task_best": {}}
        best = torch.load(self.run_dir / "best.pt", map_location=self.device, weights_only=False)
        self.model.load_state_dict(best["model"])
        return {"history": self.history, "best": self.best, "task_best": self.task_best}

    def _patience_spent(self) -> bool:
        return self.best["epoch"] >= 0 and self.epoch - self.best["epoch"] >= self.cfg.patience

    def _epoch(self, data: TeacherData, n_batches: int, on_batch) -> float:
        self.model.train()
        order = np.random.default_rng([self.cfg.seed, self.epoch]).permutation(len(data))
        total, used = 0.0, 0
        for b in range(n_batches):
            rows = self.cluster.shard(np.sort(order[b * self.cfg.batch_size:(b + 1) * self.cfg.batch_size]))
            x, side, y = data.batch(rows, self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                out = self.model(x, side)
            losses_t, observed_t = task_losses(self.spec.tasks, out.logits, y)
            if self.adatt:
                self.adatt.update(losses_t, self.shared, self.step)
                losses_t = self.adatt.apply(losses_t)
            loss = self.weighting(losses_t, observed_t) + out.regularizer.float()
            if self.cluster.any(not bool(torch.isfinite(loss)), self.device):
                self.optimizer.zero_grad(set_to_none=True)
                continue
            surgery = self.surgery is not None and self.surgery.due(self.step)
            self.scaler.scale(loss).backward(retain_graph=surgery)
            self.cluster.average_gradients(self.params)
            self.scaler.unscale_(self.optimizer)
            if surgery:
                self.surgery.apply(losses_t * self._loss_multipliers(observed_t), self.shared, self.step)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            self.scheduler.step()
            self.step += 1
            total, used = total + loss.item(), used + 1
            if on_batch:
                on_batch(b + 1, n_batches, total / used)
        return total / max(used, 1)


    def _loss_multipliers(self, observed: torch.Tensor) -> torch.Tensor:
        """d(total)/d(L_t): what each task loss was multiplied by in the backpropagated total."""
        w = self.weighting.weights().detach().to(self.device)
        if isinstance(self.weighting, UncertaintyWeighting):
            w = w * torch.tensor([t.weight for t in self.spec.tasks], device=self.device)
        return w * observed


def check_compatible(state: dict[str, Any], spec: ModelSpec, model_cfg: ModelConfig, path: Path) -> None:
    """Refuse a checkpoint of another architecture, naming what differs."""
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a FinAI teacher checkpoint (format {state.get('format')!r})")
    want, have = spec.signature(), state["signature"]
    diff = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    cfg_diff = sorted(k for k, v in asdict(model_cfg).items()
                      if _plain(state["model_config"].get(k)) != _plain(v))
    if diff or cfg_diff:
        raise CheckpointError(f"checkpoint {path} is from another architecture: it differs in "
                              f"{', '.join(diff + [f'model_config.{k}' for k in cfg_diff])}")


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
