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
from ..coords import base_grid, pixel_centres
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


def linear_weights(x: Tensor, h: int) -> Tensor:
    """Linear-interpolation weights of ``h`` nodes at the pixel centres of an ``h``-pixel axis
    (``align_corners=False``) at normalised ``x``; beyond the border nodes the border value.

    Args:
        x: ``(...)`` normalised coordinates.
        h: Nodes on the axis.

    Returns:
        ``(..., h)``, at most two non-zeros per point, summing to 1.
    """
    t = (((x + 1) * h - 1) / 2).clamp(0, h - 1)  # node units, border clamp
    cell = t.floor().clamp(0, max(h - 2, 0))
    s = t - cell
    w = torch.stack([1 - s, s], -1)  # (..., 2)
    index = (cell.long().unsqueeze(-1) + torch.arange(2, device=x.device)).clamp(max=h - 1)  # (..., 2)
    return torch.zeros(*x.shape, h, dtype=x.dtype, device=x.device).scatter_add_(-1, index, w)


def resize(field: Tensor, size: tuple[int, ...], align_corners: bool) -> Tensor:
    """A field with nodes at its own pixel centres (``align_corners=False``), linearly
    interpolated at the pixel centres of ``size`` in the ``align_corners`` convention.

    Args:
        field: ``(N, C, *field_size)``.

    Returns:
        ``(N, C, *size)`` (``field`` itself when nothing changes).
    """
    if tuple(field.shape[2:]) == tuple(size) and not align_corners:
        return field
    dtype, device = field.dtype, field.device

    def one(n: int, h: int) -> Tensor:
        make = lambda: linear_weights(pixel_centres(n, align_corners, dtype=torch.float64), h).to(dtype=dtype, device=device)
        return cached(("linear-axis", n, h, bool(align_corners), dtype, device), make)

    return separable(field, [one(n, h) for n, h in zip(size, field.shape[2:])])
