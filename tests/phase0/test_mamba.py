"""mamba_temporal: the PyTorch selective scan against a step-by-step loop (and the CUDA kernel), and the group."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from finai_models.phase0.groups.mamba import MambaTemporal
from finai_models.phase0.ssm import MambaBlock, selective_scan, selective_scan_dispatch


def _random_scan_inputs(batch=2, dim=3, state=4, steps=6, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g).to(device)

    return dict(u=rand(batch, dim, steps), delta=rand(batch, dim, steps) * 0.5,
                A=-torch.rand(dim, state, generator=g).to(device) - 0.1, B=rand(batch, state, steps),
                C=rand(batch, state, steps), D=rand(dim), z=rand(batch, dim, steps), delta_bias=rand(dim) * 0.1)


def _naive_scan(u, delta, A, B, C, D, z, delta_bias):
    """The recurrence written out per batch row, channel and step, in float64."""
    u, delta, A, B, C, D, z, bias = (t.double().numpy() for t in (u, delta, A, B, C, D, z, delta_bias))
    out = np.zeros_like(u)
    last = np.zeros((u.shape[0], u.shape[1], A.shape[1]))
    for b in range(u.shape[0]):
        for d in range(u.shape[1]):
            x = np.zeros(A.shape[1])
            for t in range(u.shape[2]):
                dt = np.log1p(np.exp(delta[b, d, t] + bias[d]))
                x = np.exp(dt * A[d]) * x + dt * B[b, :, t] * u[b, d, t]
                y = x @ C[b, :, t] + D[d] * u[b, d, t]
                out[b, d, t] = y * z[b, d, t] / (1 + np.exp(-z[b, d, t]))
            last[b, d] = x
    return out, last


def test_selective_scan_matches_step_loop():
    inputs = _random_scan_inputs()
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    expected_out, expected_last = _naive_scan(**inputs)
    np.testing.assert_allclose(out.numpy(), expected_out, atol=1e-5)
    np.testing.assert_allclose(last.numpy(), expected_last, atol=1e-5)


def test_selective_scan_other_layouts_of_B_and_C():
    """Time-invariant ``[d, n]`` and grouped ``[b, g, n, l]`` B/C equal the equivalent ``[b, n, l]`` forms."""
    x = _random_scan_inputs(dim=4)
    base = selective_scan(x["u"], x["delta"], x["A"], x["B"], x["C"], x["D"])
    grouped = selective_scan(x["u"], x["delta"], x["A"], x["B"][:, None], x["C"][:, None], x["D"])
    torch.testing.assert_close(grouped, base)
    B_fixed, C_fixed = torch.randn(4, 4), torch.randn(4, 4)
    fixed = selective_scan(x["u"], x["delta"], x["A"], B_fixed, C_fixed)
    per_channel = selective_scan(x["u"], x["delta"], x["A"], B_fixed[None, :, :, None].expand(2, 4, 4, 6),
                                 C_fixed[None, :, :, None].expand(2, 4, 4, 6))
    torch.testing.assert_close(fixed, per_channel)


def test_dispatch_falls_back_to_pytorch_on_cpu():
    inputs = _random_scan_inputs()
    torch.testing.assert_close(selective_scan_dispatch(**inputs, delta_softplus=True),
                               selective_scan(**inputs, delta_softplus=True))


def test_block_is_causal():
    torch.manual_seed(0)
    block = MambaBlock(d_model=8, d_inner=16, d_state=4, d_conv=3, dt_rank=2)
    h = torch.randn(3, 7, 8)
    changed = h.clone()
    changed[:, 4:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(block(h)[:, :4], block(changed)[:, :4])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("mamba_ssm") is None,
                    reason="needs CUDA and the optional mamba-ssm package")
def test_pytorch_scan_matches_cuda_kernel():
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    inputs = _random_scan_inputs(batch=4, dim=64, state=16, steps=37, device="cuda", seed=3)
    ours, our_last = selective_scan(**inputs, delta_softplus=True, return_last_state=True)
    kernel, kernel_last = selective_scan_fn(**inputs, delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(ours, kernel, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(our_last, kernel_last, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(selective_scan_dispatch(**inputs, delta_softplus=True), kernel)


@pytest.fixture(scope="module")
def fitted(phase0_env):
    group = MambaTemporal(phase0_env.settings, 50)
    group.fit(phase0_env.train, None)
    return group, group.transform(phase0_env.month, None)


def test_self_supervised_training_reduces_the_loss(fitted):
    group, _ = fitted
    assert group.fit_losses[-1] < 0.8 * group.fit_losses[0]


def test_rows_do_not_depend_on_the_batch(fitted, phase0_env):
    group, values = fitted
    rows = np.arange(0, phase0_env.month.n, 7)
    np.testing.assert_allclose(group.transform(phase0_env.month.subset(rows), None), values[rows], atol=1e-5)
