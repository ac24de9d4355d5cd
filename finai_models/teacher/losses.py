"""Per-task losses and the ways the teacher combines them: fixed or uncertainty weighting, AdaTT, PCGrad.

Each piece fixes a flaw of the original system: losses read RAW logits (CE once ran on sigmoid outputs),
focal loss is really applied, the task weight enters uncertainty weighting exactly once with the ½·s
regulariser of Kendall et al., AdaTT's masked entries are −inf (a zeroed logit still got weight), and
gradient surgery runs on the caller's step instead of a counter that only moved when it projected.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from finai_models.teacher.tasks import TaskSpec


def task_loss(spec: TaskSpec, logits: Tensor, target: Tensor) -> tuple[Tensor, int]:
    """Mean loss over the rows whose label is observed (NaN = missing), and how many rows that is.

    ``logits`` is ``[B, out_dim]`` and raw; ``target`` is float ``[B]`` (class indices for multiclass).
    With no observed row the loss is a zero still connected to the graph, so ``backward()`` works.
    The loss runs in float32 whatever the model's precision, for stable logsigmoid/softmax.
    """
    if logits.dim() != 2 or logits.shape[1] != spec.out_dim:
        raise ValueError(f"task {spec.name!r}: logits must be [batch, {spec.out_dim}], got {list(logits.shape)}")
    if target.dim() != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"task {spec.name!r}: target must be [{logits.shape[0]}] to match the logits' batch, "
                         f"got {list(target.shape)}")
    logits, target = logits.float(), target.float()
    observed = ~torch.isnan(target)
    count = int(observed.sum())
    if count == 0:
        return logits[:0].sum(), 0  # an empty sum: exactly 0, finite even if some logits are not
    x, y = logits[observed], target[observed]
    if spec.kind == "multiclass":
        if bool(((y < 0) | (y >= spec.classes) | (y != y.round())).any()):
            raise ValueError(f"task {spec.name!r}: class labels must be integers in [0, {spec.classes}), "
                             f"got values from {y.min().item():g} to {y.max().item():g}")
        return F.cross_entropy(x, y.long()), count
    z = x[:, 0]
    if spec.kind == "regression":
        loss = F.huber_loss(z, y, delta=1.0) if spec.loss == "huber" else F.mse_loss(z, y)
        return loss, count
    if bool(((y < 0) | (y > 1)).any()):
        raise ValueError(f"task {spec.name!r}: binary labels must lie in [0, 1]")
    if spec.loss == "bce":
        return F.binary_cross_entropy_with_logits(z, y), count
    # focal: α_t·(1−p_t)^γ·BCE, every factor from logits (1−p_t is a sigmoid, never 1 − something ≈ 1)
    bce = -(y * F.logsigmoid(z) + (1 - y) * F.logsigmoid(-z))
    alpha_t = y * spec.focal_alpha + (1 - y) * (1 - spec.focal_alpha)
    if spec.focal_gamma == 0:
        return (alpha_t * bce).mean(), count
    miss = y * torch.sigmoid(-z) + (1 - y) * torch.sigmoid(z)  # 1 − p_t
    modulator = miss.clamp_min(torch.finfo(miss.dtype).tiny).pow(spec.focal_gamma)  # finite gradient at 0
    return (alpha_t * modulator * bce).mean(), count


class _InwardClamp(torch.autograd.Function):
    """Clamp whose gradient passes wherever a descent step would move the value (back) inside the range.

    A plain clamp has zero gradient outside its range, so an s_t pushed one step past a bound would be
    frozen there for good; a straight-through clamp instead lets it drift arbitrarily far outside.
    """

    @staticmethod
    def forward(ctx, x: Tensor, lo: float, hi: float) -> Tensor:
        ctx.save_for_backward(x)
        ctx.lo, ctx.hi = lo, hi
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        (x,) = ctx.saved_tensors
        keep = ((x >= ctx.lo) & (x <= ctx.hi)) | ((x > ctx.hi) & (grad > 0)) | ((x < ctx.lo) & (grad < 0))
        return grad * keep, None, None


def _task_weights(specs: Sequence[TaskSpec]) -> Tensor:
    return torch.tensor([float(s.weight) for s in specs], dtype=torch.float32)


def prior_losses(specs: Sequence[TaskSpec], labels: Mapping[str, np.ndarray]) -> Tensor:
    """``[T]``: each task's loss under the best constant prediction on the training labels.

    Dividing by it puts every task on one scale, where 1 means "no better than the base rate": a
    50-class cross-entropy starts near ln 50 = 3.9 and a 2%-prevalence BCE near 0.1, so unscaled the
    multiclass tasks own the shared experts' gradient. The constant is the prior itself (class
    frequencies, the base rate, the median), evaluated with the task's own loss function.
    """
    out = []
    for spec in specs:
        y = np.asarray(labels[spec.name], np.float64)
        y = y[~np.isnan(y)]
        if not len(y):
            out.append(1.0)
            continue
        target = torch.as_tensor(y, dtype=torch.float32)
        if spec.kind == "multiclass":
            freq = np.bincount(y.astype(np.int64), minlength=spec.classes) + 0.5
            logit = torch.log(torch.as_tensor(freq / freq.sum(), dtype=torch.float32))
        elif spec.kind == "binary":
            p = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
            logit = torch.tensor([np.log(p / (1 - p))], dtype=torch.float32)
        else:
            logit = torch.tensor([float(np.median(y))], dtype=torch.float32)
        value, _ = task_loss(spec, logit.expand(len(y), -1), target)
        out.append(max(float(value), 1e-3))
    return torch.tensor(out, dtype=torch.float32)


class FixedWeighting(nn.Module):
    """Σ_t w_t·L_t/c_t over the observed tasks: the combination when uncertainty weighting is off.

    ``scale`` (c_t, ones until ``set_scale``) is each task's prior loss (``prior_losses``)."""

    def __init__(self, specs: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.register_buffer("weight", _task_weights(specs))
        self.register_buffer("scale", torch.ones(len(specs)))

    def set_scale(self, scale: Tensor) -> None:
        self.scale.copy_(scale.to(self.scale))

    def forward(self, losses: Tensor, observed: Tensor) -> Tensor:
        losses = torch.where(observed, losses / self.scale, torch.zeros_like(losses))  # a NaN must not reach the sum
        return (self.weight * losses).sum()

    def weights(self) -> Tensor:
        return self.weight


class UncertaintyWeighting(nn.Module):
    """Kendall et al. (2018): Σ_t w_t·(½·exp(−s_t)·L_t + ½·s_t) with a learned s_t = log σ_t² per task.

    The task weight w_t multiplies the whole term once (the original applied it twice, w²·p·L + w·s).
    s_t is clamped to [−4, 4] so no task is silenced or blown up; unobserved tasks add nothing and
    their s_t gets no gradient.
    """

    S_MIN, S_MAX = -4.0, 4.0

    def __init__(self, specs: Sequence[TaskSpec]) -> None:
        super().__init__()
        self.register_buffer("weight", _task_weights(specs))
        self.register_buffer("scale", torch.ones(len(specs)))
        self.log_vars = nn.Parameter(torch.zeros(len(specs)))

    def set_scale(self, scale: Tensor) -> None:
        self.scale.copy_(scale.to(self.scale))

    def _s(self) -> Tensor:
        return _InwardClamp.apply(self.log_vars, self.S_MIN, self.S_MAX)

    def forward(self, losses: Tensor, observed: Tensor) -> Tensor:
        s = self._s()
        losses = torch.where(observed, losses / self.scale, torch.zeros_like(losses))  # NaN·0 would poison the gradient
        terms = self.weight * (0.5 * torch.exp(-s) * losses + 0.5 * s)
        return torch.where(observed, terms, torch.zeros_like(terms)).sum()

    def weights(self) -> Tensor:
        """The effective multiplier ½·exp(−s_t) of each task's loss (before w_t), for logging."""
        return 0.5 * torch.exp(-self._s().detach())


def _flat_grads(losses: Sequence[Tensor] | Tensor, params: Sequence[Tensor]) -> Tensor:
    """``[T, P]``: each loss's gradient over ``params``, flattened in float32; zeros where it has none."""
    rows = []
    for loss in losses:
        if loss.requires_grad:
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        else:
            grads = (None,) * len(params)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1).float()
                               for g, p in zip(grads, params, strict=True)]))
    return torch.stack(rows)


class AdaTT:
    """Loss-level adaptive task-to-task transfer: each task borrows a little of the losses of tasks
    whose gradients on the shared layers point the same way as its own.

    Every ``interval`` steps ``update`` measures the cosine affinity of the per-task gradients and folds
    it into an EMA. ``apply`` then adds ``strength·Σ_j W_ij·L_j`` to each L_i, where W is the row
    softmax of affinity/temperature over partners with affinity > ``threshold`` (the diagonal and the
    rest are −inf, so they get exactly zero weight; a row with no such partner transfers nothing).
    The addition is capped at ``max_ratio·L_i`` so no task is drowned by its partners.
    """

    def __init__(self, n_tasks: int, interval: int = 10, decay: float = 0.9, strength: float = 0.1,
                 max_ratio: float = 0.5, temperature: float = 1.0, threshold: float = 0.0) -> None:
        if interval < 1:
            raise ValueError(f"AdaTT interval must be >= 1, got {interval}")
        self.n_tasks, self.interval, self.decay = n_tasks, interval, decay
        self.strength, self.max_ratio = strength, max_ratio
        self.temperature, self.threshold = temperature, threshold
        self.affinity = torch.zeros(n_tasks, n_tasks)
        self.updates = 0

    def update(self, losses: Sequence[Tensor] | Tensor, shared_params: Sequence[Tensor], step: int) -> None:
        """Call before ``backward()`` (the graph is kept). Pairs involving a task with no gradient this
        batch (no observed label) keep their previous affinity instead of decaying towards 0."""
        if step % self.interval != 0:
            return
        if len(losses) != self.n_tasks:
            raise ValueError(f"AdaTT expects {self.n_tasks} task losses, got {len(losses)}")
        grads = _flat_grads(losses, list(shared_params))
        norms = grads.norm(dim=1)
        has = norms > 0
        cosine = grads @ grads.T / (norms[:, None] * norms[None, :]).clamp_min(1e-12)
        affinity = self.affinity.to(cosine.device)
        smoothed = self.decay * affinity + (1 - self.decay) * cosine
        self.affinity = torch.where(has[:, None] & has[None, :], smoothed, affinity).detach()
        self.updates += 1

    def transfer_weights(self) -> Tensor:
        logits = self.affinity / self.temperature
        eye = torch.eye(self.n_tasks, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(eye | (self.affinity <= self.threshold), float("-inf"))
        return torch.softmax(logits, dim=1).nan_to_num(0.0)  # all −inf rows give NaN: no transfer

    def apply(self, losses: Tensor) -> Tensor:
        """``[T]`` enhanced losses; the unchanged input until an update found a positive affinity."""
        weights = self.transfer_weights().to(device=losses.device, dtype=losses.dtype)
        transfer = self.strength * (weights @ losses)
        cap = self.max_ratio * losses.detach()
        # scale (rather than clip) an over-cap transfer, so its gradient keeps flowing at the capped size
        over = transfer.detach() > cap
        scale = torch.where(over, cap / transfer.detach().clamp_min(1e-12), torch.ones_like(cap))
        return losses + transfer * scale

    def state_dict(self) -> dict:
        return {"affinity": self.affinity.cpu().clone(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.affinity = state["affinity"].clone()
        self.updates = int(state["updates"])


def groups_of(specs: Sequence[TaskSpec]) -> dict[str, list[int]]:
    """Task indices by ``spec.group`` (a task without a group is its own group)."""
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.group or spec.name, []).append(i)
    return groups


def project_conflicts(grads: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """PCGrad on ``[G, P]`` gradients: each g_i loses its component along every ORIGINAL g_j it conflicts
    with (g_i·g_j < 0), the partners visited in random order. Returns the projected rows and the count."""
    projected, done = grads.clone(), 0
    sq_norms = (grads * grads).sum(dim=1)
    for i in range(grads.shape[0]):
        for j in torch.randperm(grads.shape[0], generator=generator).tolist():
            if j == i or sq_norms[j] == 0:
                continue
            dot = projected[i] @ grads[j]
            if dot < 0:
                projected[i] -= dot / sq_norms[j] * grads[j]
                done += 1
    return projected, done


class GradSurgery:
    """PCGrad (Yu et al. 2020) between task groups on the shared parameters.

    Call ``apply`` after ``backward(retain_graph=True)`` and before ``optimizer.step()``; ``due(step)``
    says when the graph must be kept. ``losses`` are the per-task terms whose sum was backpropagated,
    so a group's gradient is the gradient of the SUM of its members and, with no conflict, the result
    equals plain backward. The correction Σ(projected − original) is added to ``.grad``, which keeps
    any other contribution there (auxiliary losses, accumulated micro-batches).
    """

    def __init__(self, groups: dict[str, list[int]], interval: int = 1, seed: int = 0) -> None:
        if interval < 1:
            raise ValueError(f"GradSurgery interval must be >= 1, got {interval}")
        if not groups or any(not members for members in groups.values()):
            raise ValueError(f"GradSurgery needs non-empty task groups, got {groups}")
        self.groups = {name: list(members) for name, members in groups.items()}
        self.interval = interval
        self.generator = torch.Generator().manual_seed(seed)
        self.projections = 0

    def due(self, step: int) -> bool:
        return step % self.interval == 0

    def apply(self, losses: Tensor, shared_params: Sequence[nn.Parameter], step: int) -> bool:
        if not self.due(step) or len(self.groups) < 2:
            return False
        if max(max(m) for m in self.groups.values()) >= len(losses):
            raise ValueError(f"GradSurgery groups {self.groups} name tasks beyond the {len(losses)} losses given")
        params = list(shared_params)
        grads = _flat_grads([losses[members].sum() for members in self.groups.values()], params)
        projected, done = project_conflicts(grads, self.generator)
        if done == 0:
            return False
        self.projections += done
        delta = (projected - grads).sum(dim=0)
        offset = 0
        for p in params:
            d = delta[offset:offset + p.numel()].view_as(p).to(p.dtype)
            offset += p.numel()
            if p.grad is None:
                p.grad = d
            else:
                p.grad.add_(d)
        return True

    def state_dict(self) -> dict:
        return {"projections": self.projections, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.projections = int(state["projections"])
        self.generator.set_state(state["generator"])


def task_losses(specs: Sequence[TaskSpec], logits: Sequence[Tensor],
                targets: Mapping[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Every task's loss ``[T]`` and whether the batch observed any of its labels ``[T]`` (bool)."""
    pairs = [task_loss(t, logit, targets[t.name]) for t, logit in zip(specs, logits, strict=True)]
    losses = torch.stack([value for value, _ in pairs])
    return losses, torch.tensor([count > 0 for _, count in pairs], device=losses.device)
