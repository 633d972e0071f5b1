"""The grid that :func:`stnkit.warp` hands to the sampler, on the fast path.

For the 2-D matrix families (``translation``, ``attention``, ``similarity``, ``affine``,
``projective``) the sampling grid is written **planar**: ``x`` and ``y`` as two contiguous
``(N, H, W)`` planes, each ``a x_t + (b y_t + c)`` in one broadcast add of a column term over a row
term (``projective``: three such planes, then one division by the third). The sampler receives
them as an ``(N, H, W, 2)`` view (``planar.permute(0, 2, 3, 1)``): ``F.grid_sample``'s CPU kernel
reads such a grid with plain vector loads (it has a code path for a grid whose width stride is 1),
as fast as a contiguous one. Writing the interleaved ``(N, H, W, 2)`` layout instead costs a GEMM
or a broadcast whose inner dimension is 2, both several times slower.

Backward: the gradient ``F.grid_sample`` returns for the grid is an ordinary contiguous
``(N, H, W, 2)`` tensor ``G``; the base grid is separable, so the gradient of the rows needs only
two passes over ``G``: its column sums ``sum_i G[i, j]`` (a plain reduction) and its ``y_t``-weighted
column sums ``sum_i y_t[i] G[i, j]`` (one batched vector-matrix product); the rest is ``(N, W, 2)``
arithmetic. No ``(N, H, W, 3)`` base grid and no per-sample GEMM, as ``F.affine_grid``'s backward
has.

Where this does not apply (other families, 3-D, ``torch.compile``, ``torch.func`` transforms, the
reference path switched on with :mod:`stnkit.fastpath`), :func:`warp_grid` returns
``family.grid(...)`` unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from . import fastpath
from .coords import pixel_centres
from .transforms import Transform
from .transforms._linear import cached
from .transforms.matrix import PROJECTIVE_EPS, MatrixTransform


def _axes(size: tuple[int, int], align_corners: bool, dtype: torch.dtype,
          device: torch.device) -> tuple[Tensor, Tensor]:
    """Normalised pixel centres ``x_t`` ``(1, 1, 1, W)`` and ``y_t`` ``(1, 1, H, 1)``, cached."""
    h, w = size
    xt = cached(("x_t", w, bool(align_corners), dtype, device),
                lambda: pixel_centres(w, align_corners, dtype=dtype, device=device).view(1, 1, 1, w))
    yt = cached(("y_t", h, bool(align_corners), dtype, device),
                lambda: pixel_centres(h, align_corners, dtype=dtype, device=device).view(1, 1, h, 1))
    return xt, yt


class _PlanarAffineGrid(torch.autograd.Function):
    """``rows (N, 2, 3) -> grid (N, H, W, 2)``, a view of planar ``(N, 2, H, W)`` storage."""

    @staticmethod
    def forward(ctx: Any, rows: Tensor, xt: Tensor, yt: Tensor) -> Tensor:  # xt (1, 1, 1, W), yt (1, 1, H, 1)
        a, b, c = rows.view(rows.shape[0], 2, 3, 1, 1).unbind(2)  # each (N, 2, 1, 1)
        # One full-size op: a column term (N, 2, 1, W) plus a row term (N, 2, H, 1); a binary op
        # with one broadcast operand runs vectorised along the width.
        planar = torch.add(a * xt, torch.addcmul(c, b, yt))  # (N, 2, H, W): a x_t + b y_t + c
        ctx.save_for_backward(xt, yt)
        return planar.permute(0, 2, 3, 1)  # (N, H, W, 2) view, width stride 1

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # grad (N, H, W, 2)
        xt, yt = ctx.saved_tensors
        n, h, w, _ = grad.shape
        g = grad.reshape(n, h, w * 2)  # (N, H, W*2), (x, y) interleaved along the width
        col = g.sum(1).view(n, w, 2)  # column sums: (N, W, 2)
        row = torch.matmul(yt.view(1, 1, h), g).view(n, w, 2)  # y_t-weighted column sums: (N, W, 2)
        da = (col * xt.view(1, w, 1)).sum(1, keepdim=True)  # sum of grad * x_t: (N, 1, 2)
        drows = torch.cat([da, row.sum(1, keepdim=True), col.sum(1, keepdim=True)], dim=1)  # (N, 3, 2)
        return drows.transpose(1, 2), None, None  # (N, 2, 3)


class _PlanarProjectiveGrid(torch.autograd.Function):
    """``matrix (N, 3, 3) -> grid (N, H, W, 2)``: homogeneous planes ``(N, 3, H, W)``, then one
    division, with the homogeneous coordinate kept ``PROJECTIVE_EPS`` away from 0 as
    :class:`stnkit.transforms.Projective` does."""

    @staticmethod
    def forward(ctx: Any, m: Tensor, xt: Tensor, yt: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        a, b, c = m.view(m.shape[0], 3, 3, 1, 1).unbind(2)  # each (N, 3, 1, 1)
        hom = torch.add(a * xt, torch.addcmul(c, b, yt))  # (N, 3, H, W): x, y, w planes
        w = hom[:, 2]  # (N, H, W)
        small = w.abs() < PROJECTIVE_EPS
        # On the CPU, skip the clamp when no point needs it; elsewhere always clamp: reading the
        # flag would make the host wait for the device on every call.
        clamped = bool(small.any()) if w.device.type == "cpu" else True
        if clamped:  # points near the horizon: keep the sign, move to +-eps (0 -> +eps)
            w.copy_(torch.where(small, torch.where(w < 0, -PROJECTIVE_EPS, PROJECTIVE_EPS).to(w.dtype), w))
        inv = w.reciprocal_().unsqueeze(1)  # (N, 1, H, W), in the w plane
        hom[:, :2].mul_(inv)  # the grid, in the x, y planes
        grid = hom[:, :2].permute(0, 2, 3, 1)  # (N, H, W, 2) view
        small = small if clamped else None
        ctx.mark_non_differentiable(inv)
        if small is not None:
            ctx.mark_non_differentiable(small)
        ctx.save_for_backward(m, xt, yt, grid, inv, small)
        ctx.set_materialize_grads(False)
        return grid, inv, small

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _inv: Any, _small: Any) -> tuple[Tensor | None, None, None]:
        m, xt, yt, grid, inv, small = ctx.saved_tensors
        if grad is None:
            return None, None, None
        if torch.is_grad_enabled():  # double backward: differentiate the plain formula instead
            with torch.enable_grad():
                plain = _projective_planes(m, xt, yt)  # (N, 2, H, W)
                (dm,) = torch.autograd.grad(plain, m, grad.permute(0, 3, 1, 2), create_graph=True)
            return dm, None, None
        n, h, w, _ = grad.shape
        point = grid.permute(0, 3, 1, 2)  # (N, 2, H, W)
        d = torch.empty(n, 3, h, w, dtype=grad.dtype, device=grad.device)  # d/d(x, y, w planes)
        torch.mul(grad.permute(0, 3, 1, 2), inv, out=d[:, :2])  # (N, 2, H, W)
        dw = torch.mul(d[:, 0], point[:, 0], out=d[:, 2]).addcmul_(d[:, 1], point[:, 1])  # (N, H, W)
        if small is not None:
            dw.masked_fill_(small, 0.0)  # clamped: the grid does not move with w there
        dw.neg_()  # d/dw of (x/w, y/w) = -(x, y)/w^2 = -point/w
        col = d.sum(2)  # (N, 3, W)
        row = d.sum(3)  # (N, 3, H)
        dm = torch.stack([(col * xt.view(1, 1, -1)).sum(2), (row * yt.view(1, 1, -1)).sum(2), row.sum(2)], dim=2)
        return dm, None, None  # (N, 3, 3)


def _projective_planes(m: Tensor, xt: Tensor, yt: Tensor) -> Tensor:
    """The projective grid's ``(N, 2, H, W)`` planes by plain differentiable ops (double backward)."""
    a, b, c = m.view(m.shape[0], 3, 3, 1, 1).unbind(2)  # each (N, 3, 1, 1)
    hom = a * xt + (c + b * yt)  # (N, 3, H, W)
    w = hom[:, 2:]
    w = torch.where(w.abs() < PROJECTIVE_EPS, torch.where(w < 0, -PROJECTIVE_EPS, PROJECTIVE_EPS).to(w.dtype), w)
    return hom[:, :2] / w


def _applies(family: Transform, theta: Tensor) -> bool:
    # The planar functions use the classic ``forward(ctx, ...)`` form (about 45 us less Python per
    # call than ``setup_context``), which torch.func transforms (vmap, grad) do not accept: those,
    # like torch.compile, get ``family.grid`` (whose function supports them).
    return (fastpath.enabled() and isinstance(family, MatrixTransform) and family.ndim == 2
            and theta.dtype in (torch.float32, torch.float64) and not torch.compiler.is_compiling()
            and not _functorch_active())


def _functorch_active() -> bool:
    """Whether a torch.func transform (grad, vmap, ...) is running; works on older PyTorch too."""
    active = getattr(torch._C, "_are_functorch_transforms_active", None)  # newer PyTorch only
    if active is not None:
        return bool(active())
    return torch._C._functorch.peek_interpreter_stack() is not None


def warp_grid(family: Transform, theta: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """The grid :func:`stnkit.warp` samples with: the planar fast path where it applies, else
    ``family.grid(theta, size, align_corners)``.

    Args:
        family: A transform family.
        theta: ``(N, num_params)``, already validated.
        size: Output ``(H, W)`` (``(D, H, W)`` for 3-D families).
        align_corners: See :mod:`stnkit.coords`.

    Returns:
        ``(N, H, W, 2)`` (possibly a non-contiguous view), or ``(N, D, H, W, 3)``.
    """
    if not _applies(family, theta):
        return family.grid(theta, size, align_corners)
    size = family._check_size(size)
    rows = family._rows(theta)  # (N, 2, 3), or (N, 3, 3) for projective
    xt, yt = _axes(size, align_corners, theta.dtype, theta.device)
    if family.projective:
        return _PlanarProjectiveGrid.apply(rows, xt, yt)[0]
    return _PlanarAffineGrid.apply(rows, xt, yt)
