"""Data-parallel training across the processes ``torchrun`` starts: one per GPU (NCCL) or CPU (gloo).

Each process holds a full replica and every global batch is split between them (rank r takes rows
r, r+N, r+2N, ...), so N processes train with the same batch size, learning rate and epochs as one
process and each does 1/N of the work per step. The gradients of every trainable parameter (the
model and the learned loss weights) are averaged in one flat all-reduce *before* AMP unscaling,
clipping and the optimizer step, so the overflow check and the step see identical gradients on
every rank and the replicas stay identical; ``assert_in_sync`` verifies that at every epoch end.
Rank 0 alone evaluates, writes checkpoints and talks to Dagster Pipes; every rank resumes from the
same ``last.pt`` (one node, or a shared file system across nodes).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from finai_models.errors import FinAIError


class ReplicaDivergence(FinAIError):
    """Data-parallel replicas no longer hold the same parameters (a synchronisation bug)."""


@dataclass(frozen=True)
class Cluster:
    """Where this process sits among the training processes (a single process by default)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> Cluster:
        """Read the ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/``LOCAL_WORLD_SIZE`` that torchrun sets."""
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)),
                   int(env.get("LOCAL_WORLD_SIZE", env.get("WORLD_SIZE", 1))))

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def start(self, init_method: str | None = None) -> None:
        """Join the process group: gloo for CPU tensors, NCCL for CUDA tensors where CUDA exists."""
        if self.active and not dist.is_initialized():
            backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend, init_method=init_method, rank=self.rank, world_size=self.world)

    def stop(self) -> None:
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    def share(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (options only rank 0 received, e.g. from Dagster Pipes)."""
        if not self.active:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def place(self, device: torch.device) -> torch.device:
        """This process's own GPU (``cuda:LOCAL_RANK``); CPU stays CPU."""
        if device.type != "cuda" or not self.active:
            return device
        torch.cuda.set_device(self.local_rank)
        return torch.device("cuda", self.local_rank)

    def shard(self, rows: np.ndarray) -> np.ndarray:
        return rows[self.rank::self.world] if self.active else rows

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any rank (so all ranks skip a step together)."""
        if not self.active:
            return flag
        t = torch.tensor([float(flag)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def average_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Replace each gradient by its mean over the ranks (a missing gradient counts as zero)."""
        if not self.active:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).float() for g in grads])
        dist.all_reduce(flat)
        flat /= self.world
        offset = 0
        for p, g in zip(params, grads, strict=True):
            n = g.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n

    def broadcast(self, tensors: Iterable[torch.Tensor]) -> None:
        """Copy rank 0's values into every rank (identical starting replicas)."""
        if self.active:
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def assert_in_sync(self, params: Iterable[torch.Tensor], device: torch.device) -> None:
        """Raise ``ReplicaDivergence`` when any rank's parameters differ from rank 0's."""
        if not self.active:
            return
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1).double() for p in params])
            probe = torch.stack([flat.sum(), (flat * torch.arange(1, flat.numel() + 1, device=flat.device,
                                                                     dtype=flat.dtype).remainder(97)).sum()])
            lo, hi = probe.clone().to(device), probe.clone().to(device)
            dist.all_reduce(lo, op=dist.ReduceOp.MIN)
            dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        if not torch.equal(lo, hi):
            raise ReplicaDivergence(f"data-parallel replicas diverged (parameter checksums span {lo.tolist()} .. "
                                    f"{hi.tolist()} across {self.world} ranks)")

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


SINGLE_PROCESS = Cluster()
