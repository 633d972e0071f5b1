"""Section 1: the affine spatial transformer (grid + bilinear sample) against PyTorch's own path.

* ours: ``stnkit.warp(x, theta, "affine")`` (validation included; fast grid path + the sampler);
* baseline: ``F.grid_sample(x, F.affine_grid(theta, x.shape))``.

theta (``(N, 6)``, a random warp near the identity) requires grad; the image does not (an ST at the
input of a network). ``fwd`` builds the autograd graph; ``fwd_bwd`` adds the backward pass to theta
with a fixed upstream gradient. Peak memory: see :mod:`benchmarks._timing`.

Each row also holds ``floor_fwd_bwd_ms``: ``F.grid_sample`` alone (forward + backward to its grid) on
a grid computed beforehand, i.e. the time left once the grid costs nothing, and ``copy_ms``: one copy
of the output-sized tensor, the memory-traffic floor.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

import stnkit

from . import _timing

SHAPES = [(256, 1, 28, 28), (256, 1, 42, 42), (256, 1, 60, 60), (64, 3, 224, 224), (32, 64, 56, 56)]
SMOKE_SHAPES = [(2, 1, 8, 8), (2, 3, 6, 10)]
MNIST_SHAPES = SHAPES[:3]
TARGET_MNIST = 3.0  # fwd+bwd speedup at the MNIST-sized shapes (issue 5)
TARGET_LARGE = 1.0  # never slower at the large shapes


def _inputs(shape: tuple[int, ...], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n, c, h, w = shape
    x = torch.rand(shape, generator=g)
    theta = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]) + 0.1 * torch.randn(n, 6, generator=g)
    upstream = torch.randn(n, c, h, w, generator=g)
    return x, theta.requires_grad_(), upstream


def ours(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    return stnkit.warp(x, theta, "affine")


def baseline(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta.view(-1, 2, 3), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, align_corners=False)


def case(shape: tuple[int, ...], *, repeats: int, warmup: int, budget_s: float, memory: bool = True) -> dict[str, Any]:
    """Times one shape; returns a :func:`benchmarks._timing.comparison` row."""
    x, theta, upstream = _inputs(shape)
    grid = F.affine_grid(theta.detach().view(-1, 2, 3), list(shape), align_corners=False)
    grid.requires_grad_()
    out_like = torch.empty_like(x)

    def step(fn):
        return lambda: torch.autograd.grad(fn(x, theta), theta, upstream)

    def floor():
        torch.autograd.grad(F.grid_sample(x, grid, align_corners=False), grid, upstream)

    diff = (ours(x, theta) - baseline(x, theta)).abs().max().item()
    times = _timing.interleaved(
        {"ours_fwd": lambda: ours(x, theta), "baseline_fwd": lambda: baseline(x, theta),
         "ours_fwd_bwd": step(ours), "baseline_fwd_bwd": step(baseline), "floor": floor,
         "copy": lambda: out_like.copy_(x)},
        repeats=repeats, warmup=warmup, budget_s=budget_s)
    peaks = {"ours": _timing.peak_memory_bytes(step(ours)),
             "baseline": _timing.peak_memory_bytes(step(baseline))} if memory else None
    target = TARGET_MNIST if shape in MNIST_SHAPES else TARGET_LARGE
    row = _timing.comparison(
        f"affine/{'x'.join(map(str, shape))}", "affine", shape,
        "stnkit.warp affine (fast grid + F.grid_sample)", "F.affine_grid + F.grid_sample", times, peaks,
        floor_fwd_bwd_ms=_timing.significant(times["floor"]), copy_ms=_timing.significant(times["copy"]),
        max_abs_diff=diff, target_speedup_fwd_bwd=target)
    row["meets_target"] = row["speedup_fwd_bwd"] >= target and (
        peaks is None or None in peaks.values() or peaks["ours"] <= peaks["baseline"])
    return row


def run(smoke: bool = False, repeats: int = 30, warmup: int = 3) -> list[dict[str, Any]]:
    """Every shape of section 1 (tiny shapes, one repeat each when ``smoke``)."""
    if smoke:
        return [case(s, repeats=1, warmup=1, budget_s=None) for s in SMOKE_SHAPES]
    return [case(s, repeats=repeats, warmup=warmup, budget_s=8.0) for s in SHAPES]
