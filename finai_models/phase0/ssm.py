"""A selective state-space (Mamba) block in plain PyTorch, with the CUDA kernel where it exists.

The original system ran Mamba as a separate GPU job over one-step "sequences"; here the block
encodes each customer's real monthly sequence and must run on the CPU workers that compute
Phase 0. ``selective_scan`` therefore reimplements the semantics of
``mamba_ssm.ops.selective_scan_interface.selective_scan_fn`` (same arguments, same result) in
PyTorch, and ``selective_scan_dispatch`` hands CUDA tensors to mamba-ssm's fused kernel when that
optional package (the ``gpu`` extra) is installed. With 12 monthly steps the sequential loop
over time is cheap; everything else is vectorised over batch, channels and states.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache

import torch
import torch.nn.functional as F
from torch import nn

TORCH_THREADS = 2


@contextmanager
def torch_session(seed: int, threads: int = TORCH_THREADS) -> Iterator[None]:
    """Seed torch's RNG and fix its thread count for a block, restoring both afterwards.

    Fitting seeds everything from ``settings.phase0.seed`` and fixes the thread count, so a
    refit on the same months reproduces the same weights without disturbing other callers.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous)


def _per_step(M: torch.Tensor, dim: int) -> torch.Tensor:
    """B or C as ``[l or 1, b or 1, d or 1, n]`` so that slice ``[t]`` broadcasts with the state.

    Accepts the layouts of ``selective_scan_fn``: time-invariant ``[d, n]``, input-dependent
    ``[b, n, l]``, or grouped ``[b, g, n, l]`` (each group shared by ``d / g`` channels).
    """
    M = M.float()
    if M.dim() == 2:
        return M[None, None]
    if M.dim() == 3:
        return M.permute(2, 0, 1)[:, :, None, :]
    groups = M.shape[1]
    if dim % groups:
        raise ValueError(f"{dim} channels cannot be split into {groups} groups")
    return M.repeat_interleave(dim // groups, dim=1).permute(3, 0, 1, 2)


def _readout(state: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """``<state, C>`` over the state dimension: one batched matmul when C is shared by all channels."""
    if C.shape[-2] == 1 and C.shape[0] == state.shape[0]:
        return torch.matmul(state, C.transpose(-1, -2)).squeeze(-1)
    return (state * C).sum(-1)


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                   delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                   return_last_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The selective scan of Mamba, with the signature and semantics of mamba-ssm's ``selective_scan_fn``.

    Shapes: ``u, delta [b, d, l]``, ``A [d, n]`` (real), ``B, C [b, n, l]`` (or ``[d, n]``,
    ``[b, g, n, l]``), ``D [d]``, ``z [b, d, l]``, ``delta_bias [d]``. With
    ``Δ = softplus(delta + delta_bias)`` (softplus only if ``delta_softplus``) the state
    ``x [b, d, n]`` follows ``x_t = exp(Δ_t A) x_{t-1} + Δ_t B_t u_t`` from ``x_0 = 0``, the output
    is ``y_t = <x_t, C_t> + D u_t``, gated by ``silu(z_t)`` when ``z`` is given. Computes in
    fp32 and returns ``u``'s dtype; ``last_state`` is ``x`` after the last step.
    """
    if A.is_complex():
        raise NotImplementedError("complex A is not supported by the PyTorch selective scan")
    dtype = u.dtype
    u, delta, A = u.float(), delta.float(), A.float()
    if delta_bias is not None:
        delta = delta + delta_bias.float()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    B_t, C_t = _per_step(B, A.shape[0]), _per_step(C, A.shape[0])
    delta_t, du_t = delta.permute(2, 0, 1), (delta * u).permute(2, 0, 1)   # [l, b, d]
    state = u.new_zeros(u.shape[0], A.shape[0], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        decay = torch.exp(delta_t[t, :, :, None] * A)
        state = torch.addcmul(du_t[t, :, :, None] * B_t[min(t, len(B_t) - 1)], decay, state)
        ys.append(_readout(state, C_t[min(t, len(C_t) - 1)]))
    y = torch.stack(ys, dim=2)
    if D is not None:
        y = y + u * D.float()[:, None]
    if z is not None:
        y = y * F.silu(z.float())
    y = y.to(dtype)
    return (y, state) if return_last_state else y


@cache
def _cuda_kernel() -> Callable | None:
    """mamba-ssm's fused CUDA scan, or None where the optional package is not installed."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError):
        return None
    return selective_scan_fn


def cuda_kernel_available() -> bool:
    return _cuda_kernel() is not None


def selective_scan_dispatch(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                            C: torch.Tensor, D: torch.Tensor | None = None, z: torch.Tensor | None = None,
                            delta_bias: torch.Tensor | None = None, delta_softplus: bool = False,
                            return_last_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """``selective_scan`` on the fused CUDA kernel for CUDA tensors when mamba-ssm imports, else in PyTorch."""
    kernel = _cuda_kernel() if u.is_cuda else None
    scan = kernel or selective_scan
    return scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state)


class MambaBlock(nn.Module):
    """One Mamba mixer: input-dependent Δ, B, C; diagonal ``A = -exp(A_log)``; D skip; SiLU gate.

    ``[b, l, d_model] -> [b, l, d_model]``, causal: step t sees steps <= t only (the depthwise
    convolution is left-padded and the scan runs forward). Initialisation follows the Mamba
    paper: ``A_log = log(1..n)`` per channel, ``D = 1``, and the Δ bias set so that
    ``softplus(bias)`` is log-uniform in [1e-3, 1e-1].
    """

    def __init__(self, d_model: int, d_inner: int, d_state: int, d_conv: int, dt_rank: int):
        super().__init__()
        self.d_state, self.dt_rank = d_state, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner)
        self.conv = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner)
        dt = torch.exp(torch.rand(d_inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))     # inverse softplus
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(d_inner, 1))
        self.D = nn.Parameter(torch.ones(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        steps = h.shape[1]
        x, z = self.in_proj(h).chunk(2, dim=-1)
        x = F.silu(self.conv(x.transpose(1, 2))[..., :steps])                # [b, d_inner, l]
        dt, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt @ self.dt_proj.weight.T).transpose(1, 2)
        y = selective_scan_dispatch(x, delta, -torch.exp(self.A_log), B.transpose(1, 2), C.transpose(1, 2),
                                    self.D, z.transpose(1, 2), delta_bias=self.dt_proj.bias, delta_softplus=True)
        return self.out_proj(y.transpose(1, 2))
