"""The deterministic bilinear sampler (issue 14 item 2): equals ``F.grid_sample``'s values and
gradients in float64 (2-D; 3-D volumes keep ``F.grid_sample``), two runs are bitwise equal; the
GPU checks skip without CUDA."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stnkit
from stnkit._deterministic import deterministic_bilinear


def _inputs(seed, device="cpu", dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, 2, 6, 7, dtype=dtype, generator=g).to(device).requires_grad_()
    grid = (torch.rand(3, 5, 4, 2, dtype=dtype, generator=g) * 3.4 - 1.7).to(device).requires_grad_()
    upstream = torch.rand(3, 2, 5, 4, dtype=dtype, generator=g).to(device)
    return x, grid, upstream


@pytest.mark.parametrize("padding", ["zeros", "border", "reflection"])
@pytest.mark.parametrize("align_corners", [False, True])
def test_equals_grid_sample_in_value_and_gradient(padding, align_corners):
    x, grid, up = _inputs(0)
    ours = deterministic_bilinear(x, grid, padding, align_corners)
    ref = F.grid_sample(x, grid, "bilinear", padding, align_corners)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=0)
    for a, b in zip(torch.autograd.grad(ours, (x, grid), up), torch.autograd.grad(ref, (x, grid), up)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_gradcheck():
    x, grid, _ = _inputs(1)
    x, grid = x[:1, :, :4, :4].detach().requires_grad_(), grid[:1, :2, :3].detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: deterministic_bilinear(a, g, "zeros", False), (x, grid))


def _grads(device):
    x, grid, up = _inputs(2, device, torch.float32)
    x = x.detach().repeat(4, 8, 4, 4).requires_grad_()  # many points per pixel: collisions to accumulate
    grid = grid.detach().repeat(4, 6, 6, 1).requires_grad_()
    out = deterministic_bilinear(x, grid, "zeros", False)
    return torch.autograd.grad(out, (x, grid), torch.ones_like(out))


def test_two_runs_are_bitwise_equal_cpu():
    a, b = _grads("cpu"), _grads("cpu")
    assert all(torch.equal(u, v) for u, v in zip(a, b))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_deterministic_mode_is_bitwise_repeatable():
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        x = torch.rand(64, 1, 42, 42, device="cuda", requires_grad=True)
        theta = (torch.eye(2, 3) * 0.7).expand(64, 2, 3).reshape(64, 6).cuda().requires_grad_()
        runs = []
        for _ in range(2):
            out = stnkit.warp(x, theta, size=(60, 60))  # grid_sample's own backward would raise here
            runs.append(torch.autograd.grad(out.square().sum(), (x, theta)))
        assert all(torch.equal(u, v) for u, v in zip(*runs))
        xc, tc = x.detach().cpu().requires_grad_(), theta.detach().cpu().requires_grad_()
        cpu = torch.autograd.grad(stnkit.warp(xc, tc, size=(60, 60)).square().sum(), (xc, tc))
        for gpu, ref in zip(runs[0], cpu):
            torch.testing.assert_close(gpu.cpu(), ref, atol=1e-3, rtol=1e-4)
    finally:
        torch.use_deterministic_algorithms(previous)
