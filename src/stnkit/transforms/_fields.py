"""What the field families (``bspline``, ``displacement``, ``velocity``) share.

Each of them produces a displacement ``u`` of the output points in normalised units, written
**planar** ``(N, ndim, *size)`` (channel ``0`` = x, ``1`` = y, ``2`` = z), and the grid is
``base + u`` returned as the ``(N, *size, ndim)`` view ``planar.movedim(1, -1)`` (the sampler reads
such a view as fast as a contiguous grid, see :mod:`stnkit._fast_warp`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._validate import check_positive_int
from ..coords import base_grid
from ._linear import cached


def field_size(name: str, value: int | Sequence[int], ndim: int, minimum: int) -> tuple[int, ...]:
    """An int (the same on every axis) or ``ndim`` ints ``(h, w)`` / ``(d, h, w)``, each ``>= minimum``."""
    values = (value,) * ndim if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (tuple, list)) or len(values) != ndim:
        raise ValueError(f"{name}: expected an int >= {minimum} or {ndim} such ints, got {value!r}")
    for v in values:
        check_positive_int(name, v, minimum=minimum)
    return tuple(values)


def planar_base(size: tuple[int, ...], align_corners: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The identity grid, planar: ``(1, ndim, *size)`` with channel 0 = x (cached)."""
    d = len(size)

    def make() -> Tensor:
        grid = base_grid(size, align_corners, dtype=dtype, device=device)[:, :d]  # (P, ndim)
        return grid.transpose(0, 1).reshape(1, d, *size).contiguous()  # (1, ndim, *size)

    return cached(("planar-base", size, bool(align_corners), dtype, device), make)


def to_grid(displacement: Tensor, align_corners: bool) -> Tensor:
    """``(N, ndim, *size)`` planar displacement -> ``(N, *size, ndim)`` grid (a view of planar storage)."""
    size = tuple(displacement.shape[2:])
    base = planar_base(size, align_corners, displacement.dtype, displacement.device)
    return (displacement + base).movedim(1, -1)  # (N, *size, ndim)


def separable(coeffs: Tensor, bases: Sequence[Tensor]) -> Tensor:
    """Applies one 1-D basis along each spatial axis in turn (a tensor-product basis).

    Args:
        coeffs: ``(N, C, g_0, ..., g_{d-1})``.
        bases: ``d`` matrices ``(n_i, g_i)``, in the order of the spatial axes (``(H, W)`` or
            ``(D, H, W)``).

    Returns:
        ``(N, C, n_0, ..., n_{d-1})``.
    """
    out = torch.matmul(coeffs, bases[-1].transpose(0, 1))  # (..., g_last) -> (..., n_last): one GEMM
    if len(bases) == 3:
        n, c, gz, gy, w = out.shape
        h = bases[1].shape[0]
        out = torch.matmul(bases[1], out)  # (N, C, gz, H, W)
        out = torch.matmul(bases[0], out.reshape(n, c, gz, h * w))  # (N, C, D, H*W)
        return out.view(n, c, bases[0].shape[0], h, w)  # (N, C, D, H, W)
    return torch.matmul(bases[0], out)  # (N, C, H, W)
