"""The grid that :func:`stn.warp` hands to the sampler, on the fast path.

For the 2-D families whose warp is affine (``translation``, ``attention``, ``similarity``,
``affine``) the sampling grid is written **planar**: ``x`` and ``y`` as two contiguous
``(N, H, W)`` planes, one fused multiply-add each, ``x = a x_t + (b y_t + c)``, broadcasting a row
term over the width. The sampler receives them as an ``(N, H, W, 2)`` view
(``planar.permute(0, 2, 3, 1)``): ``F.grid_sample``'s CPU kernel reads such a grid with plain vector
loads (it has a code path for a grid whose width stride is 1). That is several times cheaper than
any way of writing the interleaved ``(N, H, W, 2)`` layout (a GEMM, or a broadcast whose inner
dimension is 2).

Backward: the gradient ``F.grid_sample`` returns for the grid is an ordinary contiguous
``(N, H, W, 2)`` tensor; the gradient of the affine rows is one GEMM of it against the cached block
basis (:mod:`stn.transforms._linear`), never a per-sample product.

Where this does not apply (other families, 3-D, ``torch.compile``, the reference path switched on
with :mod:`stn.fastpath`), :func:`warp_grid` returns ``family.grid(...)`` unchanged.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from . import fastpath
from .coords import pixel_centres
from .transforms import Transform
from .transforms._linear import cached
from .transforms.matrix import MatrixTransform, _block


def _axes(size: tuple[int, int], align_corners: bool, dtype: torch.dtype,
          device: torch.device) -> tuple[Tensor, Tensor]:
    """Normalised pixel centres ``x_t`` ``(1, 1, 1, W)`` and ``y_t`` ``(1, 1, H, 1)``, cached."""
    h, w = size
    key = ("axes", size, bool(align_corners), dtype, device)
    both = cached(key, lambda: torch.cat([pixel_centres(w, align_corners, dtype=dtype, device=device),
                                          pixel_centres(h, align_corners, dtype=dtype, device=device)]))
    return both[:w].view(1, 1, 1, w), both[w:].view(1, 1, h, 1)


class _PlanarAffineGrid(torch.autograd.Function):
    """``rows (N, 2, 3) -> grid (N, H, W, 2)``, a view of planar ``(N, 2, H, W)`` storage."""

    @staticmethod
    def forward(rows: Tensor, size: tuple[int, int], align_corners: bool) -> Tensor:
        n = rows.shape[0]
        xt, yt = _axes(size, align_corners, rows.dtype, rows.device)
        a, b, c = (rows[:, :, k].reshape(n, 2, 1, 1) for k in range(3))  # each (N, 2, 1, 1)
        planar = torch.addcmul(torch.addcmul(c, b, yt), a, xt)  # (N, 2, H, W): a x_t + b y_t + c
        return planar.permute(0, 2, 3, 1)  # (N, H, W, 2) view, width stride 1

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, tuple[int, int], bool], output: Tensor) -> None:
        rows, size, align_corners = inputs
        ctx.size, ctx.align_corners = size, align_corners
        ctx.dtype, ctx.device = rows.dtype, rows.device

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:  # grad (N, H, W, 2)
        block = _block(ctx.size, ctx.align_corners, 2, ctx.dtype, ctx.device)  # (3*2, H*W*2)
        n = grad.shape[0]
        coeffs = torch.mm(grad.reshape(n, block.shape[1]), block.transpose(0, 1))  # (N, 6): index k*2 + d
        return coeffs.view(n, 3, 2).transpose(1, 2), None, None  # (N, 2, 3) rows


def _applies(family: Transform, theta: Tensor) -> bool:
    return (fastpath.enabled() and isinstance(family, MatrixTransform) and family.ndim == 2
            and not family.projective and not torch.compiler.is_compiling()
            and theta.dtype in (torch.float32, torch.float64))


def warp_grid(family: Transform, theta: Tensor, size: Sequence[int], align_corners: bool) -> Tensor:
    """The grid :func:`stn.warp` samples with: the planar fast path where it applies, else
    ``family.grid(theta, size, align_corners)``.

    Args:
        family: A transform family.
        theta: ``(N, num_params)``, already validated.
        size: Output ``(H, W)`` (``(D, H, W)`` for 3-D families).
        align_corners: See :mod:`stn.coords`.

    Returns:
        ``(N, H, W, 2)`` (possibly a non-contiguous view), or ``(N, D, H, W, 3)``.
    """
    if not _applies(family, theta):
        return family.grid(theta, size, align_corners)
    size = family._check_size(size)
    rows = family._rows(theta)  # (N, 2, 3)
    return _PlanarAffineGrid.apply(rows, size, bool(align_corners))
