"""Bilinear sampling with a backward pass that uses no atomics (the deterministic mode).

PyTorch's CUDA backward of ``grid_sample`` accumulates the input gradient with atomic adds, whose
order varies from run to run, and it raises under ``torch.use_deterministic_algorithms(True)``. When
that switch is on and the input is on CUDA, :func:`grid_sample` here samples 2-D bilinear with
:func:`deterministic_bilinear` instead:

* the pixel coordinates (with the padding's clamping or reflection) are plain elementwise ops, so
  autograd differentiates them without any accumulation;
* the four taps are read with ``gather``; the backward accumulates the input gradient with one
  ``index_put_(..., accumulate=True)``, whose CUDA kernel sorts the indices and sums each run of
  equal indices in order (no atomics: the same bits on every run; and under deterministic mode
  PyTorch raises rather than run an op without a deterministic implementation, so a
  nondeterministic result cannot pass silently); the grid gradient is elementwise.

The same code runs on the CPU (where the tests compare it with ``F.grid_sample`` in float64).
3-D volumes, ``bicubic`` and ``nearest`` keep ``F.grid_sample``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def grid_sample(input: Tensor, grid: Tensor, mode: str, padding: str, align_corners: bool) -> Tensor:
    """``F.grid_sample``, or :func:`deterministic_bilinear` on CUDA in deterministic mode."""
    if (
        input.is_cuda
        and mode == "bilinear"
        and input.dim() == 4
        and torch.are_deterministic_algorithms_enabled()
        and torch.is_grad_enabled()
        and (input.requires_grad or grid.requires_grad)
    ):
        return deterministic_bilinear(input, grid, padding, align_corners)
    return F.grid_sample(input, grid, mode=mode, padding_mode=padding, align_corners=align_corners)


def _pixel(coord: Tensor, size: int, padding: str, align_corners: bool) -> Tensor:
    """Normalised coordinates -> pixel coordinates with padding applied (as ``F.grid_sample`` does)."""
    if align_corners:
        pix = (coord + 1) / 2 * (size - 1)
    else:
        pix = ((coord + 1) * size - 1) / 2
    if padding == "border":
        return pix.clamp(0, size - 1)
    if padding == "reflection":
        low, span = (0.0, size - 1.0) if align_corners else (-0.5, float(size))
        if span <= 0:
            return torch.zeros_like(pix)
        dist = (pix - low).abs()
        flips = torch.floor(dist / span)
        extra = dist - flips * span  # fmod(dist, span)
        pix = torch.where(flips.remainder(2) == 0, extra + low, span - extra + low)
        return pix.clamp(0, size - 1)
    return pix.clamp(-2, size + 1)  # zeros: farther points read zero all the same (and stay castable to int)


class _Bilinear(torch.autograd.Function):
    """Zero-padded bilinear read at pixel coordinates; backward by sorted index accumulation."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, ix: Tensor, iy: Tensor) -> Tensor:  # input (N, C, H, W); ix, iy (N, P)
        n, c, h, w = input.shape
        x0, y0 = torch.floor(ix), torch.floor(iy)
        fx, fy = ix - x0, iy - y0
        x0, y0 = x0.long(), y0.long()
        flat = input.reshape(n, c, h * w)  # (N, C, H*W)
        values, index, valid = [], [], []
        for dy in (0, 1):
            for dx in (0, 1):
                xs, ys = x0 + dx, y0 + dy
                ok = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)  # (N, P)
                idx = torch.where(ok, ys * w + xs, torch.zeros_like(xs))  # (N, P)
                v = flat.gather(2, idx.unsqueeze(1).expand(n, c, -1)) * ok.unsqueeze(1)  # (N, C, P)
                values.append(v)
                index.append(idx)
                valid.append(ok)
        v00, v01, v10, v11 = values
        fx1, fy1 = fx.unsqueeze(1), fy.unsqueeze(1)  # (N, 1, P)
        out = (v00 * (1 - fx1) + v01 * fx1) * (1 - fy1) + (v10 * (1 - fx1) + v11 * fx1) * fy1  # (N, C, P)
        ctx.save_for_backward(fx, fy, torch.stack(index, 1), torch.stack(valid, 1), *values)
        ctx.shape = (n, c, h, w)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:  # grad (N, C, P)
        fx, fy, index, valid, v00, v01, v10, v11 = ctx.saved_tensors
        n, c, h, w = ctx.shape
        grad_input = grad_ix = grad_iy = None
        if ctx.needs_input_grad[0]:
            weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy], 1)  # (N, 4, P)
            weights = weights * valid
            contrib = grad.unsqueeze(1) * weights.unsqueeze(2)  # (N, 4, C, P)
            p = index.shape[2]
            rows = torch.arange(n, device=grad.device).view(n, 1).expand(n, 4 * p)  # (N, 4P)
            acc = torch.zeros(n, h * w, c, dtype=grad.dtype, device=grad.device)  # channels last
            # accumulate=True: sorted (deterministic) accumulation on CUDA under deterministic mode
            acc.index_put_(
                (rows.reshape(-1), index.reshape(-1)), contrib.permute(0, 1, 3, 2).reshape(-1, c), accumulate=True
            )  # values (N*4P, C)
            grad_input = acc.permute(0, 2, 1).reshape(n, c, h, w)
        if ctx.needs_input_grad[1]:
            fy1 = fy.unsqueeze(1)
            grad_ix = (grad * ((v01 - v00) * (1 - fy1) + (v11 - v10) * fy1)).sum(1)  # (N, P)
        if ctx.needs_input_grad[2]:
            fx1 = fx.unsqueeze(1)
            grad_iy = (grad * ((v10 - v00) * (1 - fx1) + (v11 - v01) * fx1)).sum(1)  # (N, P)
        return grad_input, grad_ix, grad_iy


def deterministic_bilinear(input: Tensor, grid: Tensor, padding: str = "zeros", align_corners: bool = False) -> Tensor:
    """Bilinear ``F.grid_sample`` (2-D) whose backward uses no atomic adds.

    Args:
        input: ``(N, C, H, W)``.
        grid: ``(N, H', W', 2)`` normalised ``(x, y)`` points.
        padding: ``"zeros"``, ``"border"`` or ``"reflection"``.
        align_corners: See :mod:`stnkit.coords`.

    Returns:
        ``(N, C, H', W')``, equal to ``F.grid_sample(input, grid, "bilinear", padding, align_corners)``
        up to rounding, with gradients for ``input`` and ``grid``.
    """
    n, c, h, w = input.shape
    _, ho, wo, _ = grid.shape
    flat = grid.reshape(n, ho * wo, 2)  # (N, P, 2)
    ix = _pixel(flat[..., 0], w, padding, align_corners)  # (N, P)
    iy = _pixel(flat[..., 1], h, padding, align_corners)
    return _Bilinear.apply(input, ix, iy).view(n, c, ho, wo)
