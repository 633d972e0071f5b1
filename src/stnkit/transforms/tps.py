"""Thin plate spline on a regular ``k x k`` grid of control points.

``theta`` holds, for each control point ``c_i`` of the output frame, the input point ``theta_i``
it reads: ``(N, 2 k^2)``, the points ``(x, y)`` in row-major control-grid order (y outer, x inner).
The warp ``f`` is the thin plate spline with ``f(c_i) = theta_i`` (exactly when ``smoothing == 0``;
with ``smoothing = lambda > 0`` the spline trades exactness for smoothness). The control-point
system depends on the control points alone, so it is solved once, in float64, when the family is
built; a grid is then one product of a cached output basis with ``theta`` (fast path: one GEMM
against the cached block basis, see :mod:`stnkit.transforms._linear`; reference path, selected by
:mod:`stnkit.fastpath`: plain ``torch.matmul`` with autograd).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .._validate import check_positive_int
from ..errors import check_allocation
from ..coords import base_grid
from ._linear import cached, linear_grid
from .base import Transform


def _radial(d2: Tensor) -> Tensor:
    """TPS kernel ``U(r) = r^2 log r^2`` from the squared distance, with ``U(0) = 0``."""
    return d2 * torch.log(d2.clamp_min(torch.finfo(d2.dtype).tiny))


class ThinPlateSpline(Transform):
    """Thin plate spline family ("tps").

    Args:
        grid_size: ``k``, control points per side (``k >= 2``); ``num_params = 2 k^2``.
        smoothing: Regularisation ``lambda >= 0`` added to the kernel's diagonal.
    """

    name = "tps"

    def __init__(self, grid_size: int = 4, smoothing: float = 0.0) -> None:
        super().__init__()
        check_positive_int("grid_size", grid_size, minimum=2)
        if (not isinstance(smoothing, (int, float)) or isinstance(smoothing, bool) or not math.isfinite(smoothing)
                or smoothing < 0):
            raise ValueError(f"smoothing: expected a finite float >= 0, got {smoothing!r}")
        self.grid_size = grid_size
        self.smoothing = float(smoothing)
        self.num_params = 2 * grid_size * grid_size
        axis = torch.linspace(-1.0, 1.0, grid_size, dtype=torch.float64)
        yy, xx = torch.meshgrid(axis, axis, indexing="ij")
        control = torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)  # (K, 2)
        k = control.shape[0]
        kernel = _radial(torch.cdist(control, control).square()) + self.smoothing * torch.eye(k, dtype=torch.float64)
        poly = torch.cat([torch.ones(k, 1, dtype=torch.float64), control], dim=1)  # (K, 3)
        system = torch.zeros(k + 3, k + 3, dtype=torch.float64)
        system[:k, :k], system[:k, k:], system[k:, :k] = kernel, poly, poly.T
        # Spline coefficients [w; a] = solution @ theta_points, for any theta.
        self._control64 = control
        self._solution64 = torch.linalg.inv(system)[:, :k]  # (K+3, K)
        self.register_buffer("control_points", control.float(), persistent=False)

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return self._control64.reshape(-1).to(dtype=dtype or torch.get_default_dtype(), device=device)

    def _basis64(self, points: Tensor) -> Tensor:
        """``(..., 2)`` float64 points -> ``(..., K+3)`` rows ``[U(|p - c_i|), 1, x, y]``."""
        d2 = (points.unsqueeze(-2) - self._control64.to(points.device)).square().sum(-1)  # (..., K)
        ones = torch.ones_like(points[..., :1])
        return torch.cat([_radial(d2), ones, points], dim=-1)

    def output_basis(self, size: Sequence[int], align_corners: bool = False, *,
                     dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """The theta-independent ``(H*W, K)`` matrix with ``grid = output_basis @ points``.

        Computed in float64, then cast; cached (bounded LRU shared with the matrix families) under
        the spline's ``grid_size`` and ``smoothing`` and the size, ``align_corners``, dtype and device.
        """
        dtype = dtype or torch.get_default_dtype()
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = ("tps", self.grid_size, self.smoothing, tuple(size), bool(align_corners), dtype, device)
        return cached(key, lambda: self._make_output_basis(tuple(size), bool(align_corners), dtype, device))

    def _make_output_basis(self, size: tuple[int, ...], align_corners: bool, dtype: torch.dtype,
                           device: torch.device) -> Tensor:
        xy = base_grid(size, align_corners, dtype=torch.float64)[:, :2]  # (H*W, 2)
        return (self._basis64(xy) @ self._solution64).to(dtype=dtype, device=device)  # (H*W, K)

    def grid(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        self._check_theta(theta)
        size = self._check_grid(theta, size, align_corners)
        check_allocation("output_basis", (math.prod(size), self.grid_size**2 + 3), torch.float64)
        points = theta.reshape(theta.shape[0], self.num_params // 2, 2)  # (N, K, 2)
        key = ("tps-block", self.grid_size, self.smoothing, size, bool(align_corners), theta.dtype, theta.device)
        return linear_grid(points, size, key, lambda: self.output_basis(
            size, align_corners, dtype=theta.dtype, device=theta.device))  # (N, H, W, 2)

    def warp_points(self, theta: Tensor, points: Tensor) -> Tensor:
        self._check_theta(theta)
        points = self._check_points(theta, points)  # (N, P, 2)
        solution = self._solution64.to(dtype=theta.dtype, device=theta.device)  # (K+3, K)
        basis = self._basis64(points.double()).to(theta.dtype) @ solution  # (N, P, K), differentiable in points
        return basis @ theta.view(theta.shape[0], self.num_params // 2, 2)  # (N, P, 2)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, smoothing={self.smoothing}, num_params={self.num_params}"
