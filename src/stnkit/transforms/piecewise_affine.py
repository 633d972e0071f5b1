"""Piecewise affine warp on a regular ``k x k`` control grid (a triangle mesh).

The control points ``c_i`` lie on a regular grid over ``[-1, 1]^2`` (the same points as ``tps``).
``theta`` holds, for each ``c_i``, the input point ``theta_i`` it reads: ``(N, 2 k^2)``, the points
``(x, y)`` in row-major control-grid order (y outer, x inner). Each grid cell is split into two
triangles by its diagonal from the top-left corner ``(x_j, y_i)`` to the bottom-right one
``(x_{j+1}, y_{i+1})``; inside a triangle the warp is the affine map that sends its three corners to
their ``theta`` points, i.e. barycentric interpolation of the corners' ``theta``. The warp is
continuous across every triangle edge and interpolates the control points exactly.

Outside the control grid (only :meth:`PiecewiseAffine.warp_points` with points beyond
``[-1, 1]``; every pixel centre lies inside), a point uses the affine map of the border triangle of
the nearest border cell, extended beyond it (barycentric weights that may be negative). Each such
extension is affine, but two neighbouring extensions need not agree beyond the grid.

The barycentric weights of the output pixels do not depend on ``theta``: they form a fixed
``(H*W, k^2)`` basis with three non-zeros per row, so a grid is one GEMM against the cached block
basis (see :mod:`stnkit.transforms._linear`), like ``tps``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._validate import check_positive_int
from ..coords import base_grid
from ._linear import cached, linear_grid
from .base import Transform


def barycentric_basis(points: Tensor, k: int) -> Tensor:
    """Weights of the ``k^2`` control points at ``points`` (three non-zeros per point).

    Args:
        points: ``(..., 2)`` normalised ``(x, y)``.
        k: Control points per side.

    Returns:
        ``(..., k^2)``: row ``p`` holds the barycentric weights of ``p`` in its triangle (rows sum
        to 1; outside ``[-1, 1]^2`` some weights are negative).
    """
    step = 2.0 / (k - 1)
    local = (points + 1) / step  # (..., 2) control-grid units
    cell = local.floor().clamp(0, k - 2)  # (..., 2) cell index (x, y), border cells outside
    u, v = (local - cell).unbind(-1)  # local (x, y) in the cell, [0, 1] inside the grid
    cx, cy = cell.long().unbind(-1)
    lower = u >= v  # triangle (0,0) (1,0) (1,1); else (0,0) (0,1) (1,1)
    w_tl = torch.where(lower, 1 - u, 1 - v)  # top-left corner (0, 0)
    w_other = torch.where(lower, u - v, v - u)  # (1, 0) in the lower triangle, (0, 1) in the upper
    w_br = torch.where(lower, v, u)  # bottom-right corner (1, 1)
    tl = cy * k + cx
    other = torch.where(lower, tl + 1, tl + k)
    weights = torch.zeros(*points.shape[:-1], k * k, dtype=points.dtype, device=points.device)
    weights.scatter_(-1, tl.unsqueeze(-1), w_tl.unsqueeze(-1))
    weights.scatter_add_(-1, other.unsqueeze(-1), w_other.unsqueeze(-1))
    weights.scatter_add_(-1, (tl + k + 1).unsqueeze(-1), w_br.unsqueeze(-1))
    return weights


class PiecewiseAffine(Transform):
    """Piecewise affine family ("piecewise_affine").

    Args:
        grid_size: ``k``, control points per side (``k >= 2``); ``num_params = 2 k^2``.
    """

    name = "piecewise_affine"

    def __init__(self, grid_size: int = 4) -> None:
        super().__init__()
        self.grid_size = check_positive_int("grid_size", grid_size, minimum=2)
        self.num_params = 2 * grid_size * grid_size
        self.register_buffer("control_points", self.identity(dtype=torch.float32).view(-1, 2), persistent=False)

    def identity(self, *, dtype=None, device=None) -> Tensor:
        axis = torch.linspace(-1.0, 1.0, self.grid_size, dtype=torch.float64)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        control = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (K, 2)
        return control.reshape(-1).to(dtype=dtype or torch.get_default_dtype(), device=device)

    def output_basis(self, size: Sequence[int], align_corners: bool = False, *,
                     dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """The theta-independent ``(H*W, k^2)`` basis with ``grid = output_basis @ points`` (cached)."""
        dtype = dtype or torch.get_default_dtype()
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = ("piecewise_affine", self.grid_size, tuple(size), bool(align_corners), dtype, device)

        def make() -> Tensor:
            xy = base_grid(tuple(size), bool(align_corners), dtype=torch.float64)[:, :2]  # (H*W, 2)
            return barycentric_basis(xy, self.grid_size).to(dtype=dtype, device=device)  # (H*W, K)

        return cached(key, make)

    def grid(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        self._check_theta(theta)
        size = self._check_grid(theta, size, align_corners)
        points = theta.reshape(theta.shape[0], self.num_params // 2, 2)  # (N, K, 2)
        key = ("piecewise_affine-block", self.grid_size, size, bool(align_corners), theta.dtype, theta.device)
        return linear_grid(points, size, key, lambda: self.output_basis(
            size, align_corners, dtype=theta.dtype, device=theta.device))  # (N, H, W, 2)

    def warp_points(self, theta: Tensor, points: Tensor) -> Tensor:
        self._check_theta(theta)
        points = self._check_points(theta, points)  # (N, P, 2)
        basis = barycentric_basis(points, self.grid_size)  # (N, P, K)
        return basis @ theta.view(theta.shape[0], self.num_params // 2, 2)  # (N, P, 2)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, num_params={self.num_params}"
