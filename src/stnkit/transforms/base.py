"""What every transform family declares: parameter count, identity, grid and point warp."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from .._validate import check_bool, check_same_device, check_size, check_tensor
from ..errors import check_allocation


class Transform(nn.Module, ABC):
    """A family of spatial transforms ``T_theta`` mapping output points to input points.

    Subclasses set ``name``, ``ndim`` (2 or 3) and ``num_params`` and implement
    :meth:`identity`, :meth:`grid` and :meth:`warp_points`. Coordinates follow
    :mod:`stnkit.coords`.
    """

    name: ClassVar[str] = ""
    ndim: ClassVar[int] = 2
    num_params: int = 0
    has_matrix: ClassVar[bool] = False

    @abstractmethod
    def identity(self, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None) -> Tensor:
        """The parameters of the identity warp, shape ``(num_params,)``."""

    @abstractmethod
    def grid(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        """Sampling grid for an output of ``size``.

        Args:
            theta: ``(N, num_params)``.
            size: ``(H, W)`` (or ``(D, H, W)`` for 3-D families).
            align_corners: See :mod:`stnkit.coords`.

        Returns:
            ``(N, H, W, 2)`` (or ``(N, D, H, W, 3)``): the normalised input point each output
            pixel reads.
        """

    @abstractmethod
    def warp_points(self, theta: Tensor, points: Tensor) -> Tensor:
        """Maps normalised output-space points to the input points they read.

        Args:
            theta: ``(N, num_params)``.
            points: ``(N, P, ndim)`` or ``(P, ndim)`` (shared by the batch).

        Returns:
            ``(N, P, ndim)``.
        """

    def forward(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        return self.grid(theta, size, align_corners)

    # -- validation shared by subclasses ------------------------------------------------------
    def _check_theta(self, theta: Tensor, name: str = "theta") -> Tensor:
        check_tensor(name, theta, ndim=2, shape=f"(N, {self.num_params})", floating=True)
        if theta.shape[1] != self.num_params:
            raise ValueError(
                f"{name}: transform {self.name!r} expects {self.num_params} parameters per sample, "
                f"shape (N, {self.num_params}); got shape {tuple(theta.shape)}"
            )
        return theta

    def _check_size(self, size: Sequence[int]) -> tuple[int, ...]:
        return check_size("size", size, self.ndim)

    def _check_grid(self, theta: Tensor, size: Sequence[int], align_corners: bool) -> tuple[int, ...]:
        """Validates a grid request (size, flag, memory) for an already checked ``theta``."""
        size = self._check_size(size)
        check_bool("align_corners", align_corners)
        check_allocation("grid", (theta.shape[0], *size, self.ndim), theta.dtype)
        return size

    def _check_points(self, theta: Tensor, points: Tensor) -> Tensor:
        check_tensor("points", points, ndim=(2, 3), shape=f"(N, P, {self.ndim})", floating=True)
        check_same_device("points", points, "theta", theta)
        if points.shape[-1] != self.ndim:
            raise ValueError(
                f"points: expected last dimension {self.ndim} (x, y{', z' if self.ndim == 3 else ''}), "
                f"got shape {tuple(points.shape)}"
            )
        if points.dim() == 2:
            points = points.unsqueeze(0).expand(theta.shape[0], -1, -1)
        elif points.shape[0] != theta.shape[0]:
            raise ValueError(f"points: batch size {points.shape[0]} does not match theta's {theta.shape[0]}")
        return points.to(theta.dtype)

    def extra_repr(self) -> str:
        return f"num_params={self.num_params}"
