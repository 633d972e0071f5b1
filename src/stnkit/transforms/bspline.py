"""Free-form deformation by cubic B-splines (``bspline`` in 2-D, ``bspline3d`` in 3-D).

``theta`` holds the displacements, in normalised units, of a regular grid of ``g`` control points
per axis (option ``grid_size``): the coarse field ``(N, ndim, g, g[, g])`` (channel 0 = x, 1 = y,
2 = z; spatial axes ``(y, x)`` / ``(z, y, x)``), flattened to ``(N, ndim * g^ndim)``;
:meth:`BSpline.field` gives that view back. The displacement of a point is the cubic B-spline
interpolation of the control displacements, and the warp reads ``p + u(p)``.

Control points beyond the image: along each axis the ``g`` control points have spacing
``h = 2 / (g - 3)`` and start at ``-1 - h``, so one lies beyond each edge and every point of
``[-1, 1]`` has its four supporting control points. The cubic B-spline weights then sum to 1
everywhere, so a constant displacement is exactly a translation (border pixels included), and zero
displacement is the identity. Beyond ``[-1, 1]`` (:meth:`BSpline.warp_points` only) the border
cells' cubic polynomials are extended. ``grid_size >= 4`` (4 = one cell over the whole image).

The basis is a tensor product, so it is applied as one cached 1-D basis per axis in turn (see
:func:`stnkit.transforms._fields.separable`): for a ``(H, W)`` output and ``g^2`` control points
that costs ``g W (g + H)`` multiply-adds per channel instead of the ``g^2 H W`` of one dense basis
matrix (whose 3-D form would take gigabytes), so no dense GEMM is used.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..coords import pixel_centres
from ._fields import field_size, separable, to_grid
from ._linear import cached
from .base import Transform


def bspline_weights(x: Tensor, g: int) -> Tensor:
    """Cubic B-spline weights of ``g`` control points (one beyond each edge) at normalised ``x``.

    Args:
        x: ``(...)`` normalised coordinates along one axis.
        g: Control points on that axis (``>= 4``).

    Returns:
        ``(..., g)``, four non-zeros per point, summing to 1.
    """
    h = 2.0 / (g - 3)
    t = (x + 1) / h + 1  # control-index units: point j sits at t = j
    cell = t.floor().clamp(1, g - 3)
    s = t - cell
    s2, s3 = s * s, s * s * s
    w = torch.stack([(1 - s) ** 3 / 6, (3 * s3 - 6 * s2 + 4) / 6, (-3 * s3 + 3 * s2 + 3 * s + 1) / 6, s3 / 6], -1)
    index = cell.long().unsqueeze(-1) + torch.arange(-1, 3, device=x.device)  # (..., 4)
    return torch.zeros(*x.shape, g, dtype=x.dtype, device=x.device).scatter_(-1, index, w)


class BSpline(Transform):
    """Cubic B-spline free-form deformation ("bspline").

    Args:
        grid_size: Control points per axis, one int or one per axis ``(g_y, g_x)``
            (``(g_z, g_y, g_x)`` in 3-D), each ``>= 4``; ``num_params = ndim * prod(grid_size)``.
    """

    name = "bspline"
    ndim = 2
    planar_grid = True  # grid: a view of planar (N, ndim, *size) storage, see ._fields

    def __init__(self, grid_size: int | Sequence[int] = 6) -> None:
        super().__init__()
        self.grid_size = field_size("grid_size", grid_size, self.ndim, minimum=4)
        self.num_params = self.ndim * int(torch.tensor(self.grid_size).prod())

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.zeros(self.num_params, dtype=dtype or torch.get_default_dtype(), device=device)

    def field(self, theta: Tensor) -> Tensor:
        """The control displacements of ``theta (N, num_params)`` as a field ``(N, ndim, *grid_size)``."""
        self._check_theta(theta)
        return theta.view(theta.shape[0], self.ndim, *self.grid_size)

    def bases(self, size: Sequence[int], align_corners: bool = False, *, dtype: torch.dtype | None = None,
              device: torch.device | str | None = None) -> list[Tensor]:
        """The cached 1-D bases ``(n_i, g_i)``, one per spatial axis of ``size``."""
        dtype = dtype or torch.get_default_dtype()
        device = torch.device(device) if device is not None else torch.device("cpu")

        def one(n: int, g: int) -> Tensor:
            make = lambda: bspline_weights(pixel_centres(n, align_corners, dtype=torch.float64), g).to(dtype=dtype, device=device)
            return cached(("bspline-axis", n, g, bool(align_corners), dtype, device), make)

        return [one(n, g) for n, g in zip(size, self.grid_size)]

    def displacement(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        """The dense displacement ``(N, ndim, *size)`` (planar, channel 0 = x) at the output pixels."""
        size = self._check_grid(theta, size, align_corners)
        coeffs = self.field(theta)  # (N, ndim, *grid_size)
        return separable(coeffs, self.bases(size, align_corners, dtype=theta.dtype, device=theta.device))

    def grid(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        return to_grid(self.displacement(theta, size, align_corners), align_corners)  # (N, *size, ndim)

    def warp_points(self, theta: Tensor, points: Tensor) -> Tensor:
        coeffs = self.field(theta).flatten(2)  # (N, ndim, K)
        points = self._check_points(theta, points)  # (N, P, ndim)
        axes = [bspline_weights(points[..., i], g)
                for i, g in enumerate(reversed(self.grid_size))]  # per axis x, y[, z]: (N, P, g)
        weights = axes[0]  # (N, P, g_x)
        for w in axes[1:]:
            weights = (w.unsqueeze(-1) * weights.unsqueeze(-2)).flatten(-2)  # (N, P, g * prev): slower axis outer
        return points + torch.matmul(weights, coeffs.transpose(1, 2))  # (N, P, ndim)

    def extra_repr(self) -> str:
        return f"grid_size={self.grid_size}, num_params={self.num_params}"


class BSpline3d(BSpline):
    """Cubic B-spline free-form deformation of volumes ("bspline3d"), see :class:`BSpline`."""

    name = "bspline3d"
    ndim = 3

    def __init__(self, grid_size: int | Sequence[int] = 4) -> None:
        super().__init__(grid_size)


__all__ = ["BSpline", "BSpline3d", "bspline_weights"]
