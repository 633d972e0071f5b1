"""A reference sampler written from the paper's equations 3-7, for cross-checking ``grid_sample``.

It evaluates the generic kernel sum (eq. 3) densely, ``V_i = sum_nm U_nm k(x_s - m) k(y_s - n)``,
over every input pixel, so it is slow (``O(H W H' W')``) but has no indexing tricks to get wrong.
Its bilinear kernel (eq. 5) has the paper's sub-gradients (eq. 7): the derivative of
``max(0, 1 - |x_s - m|)`` with respect to ``x_s`` is 0 where ``|m - x_s| >= 1``, +1 where
``m >= x_s`` and -1 where ``m < x_s``. Points outside the image read zero.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._validate import check_choice, check_tensor
from .coords import normalized_to_pixel


class _Triangle(torch.autograd.Function):
    """``max(0, 1 - |d|)`` with the paper's sub-gradient, ``d = x_s - m``."""

    @staticmethod
    def forward(d: Tensor) -> Tensor:
        return (1 - d.abs()).clamp_min(0)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor], output: Tensor) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        (d,) = ctx.saved_tensors
        slope = torch.where(d <= 0, 1.0, -1.0).to(d.dtype)  # m >= x_s -> +1, m < x_s -> -1
        return grad * torch.where(d.abs() >= 1, torch.zeros_like(d), slope)


def bilinear_kernel(d: Tensor) -> Tensor:
    """Eq. 5's 1-D factor ``max(0, 1 - |d|)`` with eq. 7's sub-gradients."""
    return _Triangle.apply(d)


def nearest_kernel(d: Tensor) -> Tensor:
    """Eq. 4's 1-D factor ``delta(floor(x_s + 0.5) - m)``, ``d = x_s - m``; no gradient (piecewise
    constant). Ties round up (``x_s = 2.5`` reads pixel 3) where ``grid_sample`` rounds half to even."""
    return ((d >= -0.5) & (d < 0.5)).to(d.dtype)


def bicubic_kernel(d: Tensor, a: float = -0.75) -> Tensor:
    """Keys' cubic convolution kernel (``a = -0.75``, the value ``grid_sample`` uses)."""
    t = d.abs()
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


KERNELS: dict[str, Callable[[Tensor], Tensor]] = {
    "bilinear": bilinear_kernel,
    "nearest": nearest_kernel,
    "bicubic": bicubic_kernel,
}


def reference_sample(input: Tensor, grid: Tensor, kernel: str = "bilinear", align_corners: bool = False) -> Tensor:
    """Samples ``input`` at ``grid`` by the paper's eq. 3 with zero padding.

    Args:
        input: ``(N, C, H, W)``.
        grid: ``(N, H', W', 2)`` normalised ``(x, y)`` points.
        kernel: ``"bilinear"`` (eq. 5), ``"nearest"`` (eq. 4) or ``"bicubic"``.
        align_corners: See :mod:`stnkit.coords`.

    Returns:
        ``(N, C, H', W')``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # (1, 1, 2, 2)
        >>> centre = torch.zeros(1, 1, 1, 2)                  # the image centre: all 4 pixels
        >>> reference_sample(x, centre).item()
        1.5
    """
    check_tensor("input", input, ndim=4, shape="(N, C, H, W)", floating=True)
    check_tensor("grid", grid, ndim=4, shape="(N, H', W', 2)", floating=True)
    k = KERNELS[check_choice("kernel", kernel, KERNELS)]
    n, c, h, w = input.shape
    out_h, out_w = grid.shape[1:3]
    src = normalized_to_pixel(grid.reshape(n, -1, 2), (h, w), align_corners)  # (N, P, 2) pixel x, y
    cols = torch.arange(w, dtype=input.dtype, device=input.device)
    rows = torch.arange(h, dtype=input.dtype, device=input.device)
    wx = k(src[..., 0:1] - cols)  # (N, P, W): k(x_s - m)
    wy = k(src[..., 1:2] - rows)  # (N, P, H): k(y_s - n)
    out = torch.einsum("nchw,nph,npw->ncp", input, wy, wx)  # (N, C, P)
    return out.reshape(n, c, out_h, out_w)
