"""Dense fields: ``displacement``/``displacement3d`` and diffeomorphic ``velocity``/``velocity3d``.

``theta`` is a field in normalised units (see :mod:`stnkit.fields`), ``(N, 2, h, w)`` or
``(N, 3, d, h, w)`` with channel 0 = x, at the resolution ``field_size`` (any, option), flattened
to ``(N, ndim * h * w[* d])``; :meth:`Displacement.field` gives the field view, :meth:`Displacement.flat`
the flat one. Its nodes sit at the pixel centres of a ``field_size`` image in the ``align_corners=False``
convention (fixed points of the normalised frame, like ``tps``'s control points): a grid
with ``align_corners=True`` reads the field between its nodes.

* ``displacement``: the output point ``p`` reads ``p + u(p)``, the field linearly interpolated
  (bilinear or trilinear, border values beyond the border nodes) at the output pixels; at full
  resolution (``align_corners=False``) ``u`` is the field itself.
* ``velocity``: ``theta`` is a stationary velocity ``v``; the displacement is its time-1 flow by
  scaling and squaring at the field's resolution (option ``steps``, default 7, as MONAI's
  ``DVF2DDF`` and VoxelMorph's ``VecInt``), then resized like ``displacement``. While squaring it
  samples beyond the border with ``padding="border"`` (default; a constant field is then a
  translation everywhere) or ``"zeros"`` (what MONAI and VoxelMorph do), see :mod:`stnkit.fields`.

A dense field is too large for the regression layer that :class:`stnkit.SpatialTransformer`
appends; use ``SpatialTransformer(..., regression=False)`` with a net that outputs the field.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._validate import check_choice, check_positive_int
from ..fields import PADDINGS, integrate_velocity, sample_field
from ._fields import field_size, resize, to_grid
from .base import Transform


class Displacement(Transform):
    """Dense displacement field ("displacement").

    Args:
        field_size: ``(h, w)`` (``(d, h, w)`` in 3-D) or one int for every axis, each ``>= 1``;
            ``num_params = ndim * prod(field_size)``.
    """

    name = "displacement"
    ndim = 2
    planar_grid = True  # grid: a view of planar (N, ndim, *size) storage, see ._fields

    def __init__(self, field_size: int | Sequence[int] = 6) -> None:
        super().__init__()
        self.field_size = _sizes(field_size, self.ndim)
        self.num_params = self.ndim * int(torch.tensor(self.field_size).prod())

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.zeros(self.num_params, dtype=dtype or torch.get_default_dtype(), device=device)

    def field(self, theta: Tensor) -> Tensor:
        """The field view ``(N, ndim, *field_size)`` of ``theta (N, num_params)``."""
        self._check_theta(theta)
        return theta.view(theta.shape[0], self.ndim, *self.field_size)

    def flat(self, field: Tensor) -> Tensor:
        """The flat view ``(N, num_params)`` of a field ``(N, ndim, *field_size)``."""
        expected = (self.ndim, *self.field_size)
        if not isinstance(field, Tensor) or tuple(field.shape[1:]) != expected:
            got = tuple(field.shape) if isinstance(field, Tensor) else type(field).__name__
            raise ValueError(f"field: expected shape (N, {', '.join(map(str, expected))}), got {got}")
        return field.reshape(field.shape[0], self.num_params)

    def displacement(self, theta: Tensor) -> Tensor:
        """The displacement field ``(N, ndim, *field_size)`` that ``theta`` stands for."""
        return self.field(theta)

    def grid(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        size = self._check_grid(theta, size, align_corners)
        u = resize(self.displacement(theta), size, align_corners)  # (N, ndim, *size)
        return to_grid(u, align_corners)  # (N, *size, ndim)

    def warp_points(self, theta: Tensor, points: Tensor) -> Tensor:
        u = self.displacement(theta)  # (N, ndim, *field_size)
        points = self._check_points(theta, points)  # (N, P, ndim)
        n, p, d = points.shape
        where = points.view(n, p, *([1] * (d - 1)), d)  # (N, P, 1[, 1], ndim)
        values = sample_field(u, where).reshape(n, d, p)  # (N, ndim, P)
        return points + values.transpose(1, 2)  # (N, P, ndim)

    def extra_repr(self) -> str:
        return f"field_size={self.field_size}, num_params={self.num_params}"


class Displacement3d(Displacement):
    """Dense displacement field of volumes ("displacement3d"), see :class:`Displacement`."""

    name = "displacement3d"
    ndim = 3

    def __init__(self, field_size: int | Sequence[int] = 4) -> None:
        super().__init__(field_size)


class Velocity(Displacement):
    """Stationary velocity field integrated by scaling and squaring ("velocity").

    Args:
        field_size: As for :class:`Displacement`.
        steps: Squarings (``>= 0``; 0 makes it a ``displacement``).
        padding: ``"border"`` (default) or ``"zeros"`` beyond the border while squaring.
    """

    name = "velocity"

    def __init__(self, field_size: int | Sequence[int] = 6, steps: int = 7, padding: str = "border") -> None:
        super().__init__(field_size)
        self.steps = check_positive_int("steps", steps, minimum=0)
        self.padding = check_choice("padding", padding, PADDINGS)

    def displacement(self, theta: Tensor) -> Tensor:
        return integrate_velocity(self.field(theta), self.steps, padding=self.padding)

    def extra_repr(self) -> str:
        return f"field_size={self.field_size}, steps={self.steps}, padding={self.padding!r}, num_params={self.num_params}"


class Velocity3d(Velocity):
    """Stationary velocity field of volumes ("velocity3d"), see :class:`Velocity`."""

    name = "velocity3d"
    ndim = 3

    def __init__(self, field_size: int | Sequence[int] = 4, steps: int = 7, padding: str = "border") -> None:
        super().__init__(field_size, steps, padding)


def _sizes(value: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    return field_size("field_size", value, ndim, minimum=1)


__all__ = ["Displacement", "Displacement3d", "Velocity", "Velocity3d"]
