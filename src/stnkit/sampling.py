"""The sampler: reads an image at the points of a grid (over ``F.grid_sample``)."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_choice, check_tensor

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")
#: Input dtypes sampled in float32 (a grid in 8-11 bits of mantissa misses by a good part of a pixel).
LOW_PRECISION = (torch.float16, torch.bfloat16)

Fill = float | Sequence[float] | Tensor | None


def check_sampling_options(mode: str, padding: str, fill: Fill) -> None:
    """Validates ``mode``, ``padding`` and ``fill`` (shared by :func:`sample` and the module)."""
    check_choice("mode", mode, MODES)
    check_choice("padding", padding, PADDINGS)
    if fill is not None and not _is_fill(fill):
        raise TypeError(f"fill: expected None, a float, a sequence of floats (one per channel) or a "
                        f"floating-point tensor, got {fill!r}")
    if fill is not None and padding != "zeros":
        raise ValueError(f"fill: a constant fill replaces padding='zeros'; got padding={padding!r} with fill={fill!r}")


def sample(
    input: Tensor,
    grid: Tensor,
    mode: str = "bilinear",
    padding: str = "zeros",
    fill: Fill = None,
    align_corners: bool = False,
) -> Tensor:
    """Samples ``input`` at the normalised points of ``grid`` (the same warp for every channel).

    Points outside the input read the padding: ``"zeros"`` (or the constant ``fill``, a float or
    one value per channel), ``"border"`` (nearest edge pixel) or ``"reflection"``.

    ``mode="nearest"`` reads the closest pixel: its output is piecewise constant in the grid, so
    it passes **no gradient to the grid** (nor to theta); a warning says so when the grid
    requires gradients. Use ``"bilinear"`` or ``"bicubic"`` to train a localisation net.

    Args:
        input: ``(N, C, H, W)`` or ``(N, C, D, H, W)``, floating point.
        grid: ``(N, H', W', 2)`` or ``(N, D', H', W', 3)`` normalised ``(x, y[, z])`` points
            (see :mod:`stnkit.coords`).
        mode: ``"bilinear"``, ``"nearest"`` or ``"bicubic"`` (2-D only).
        padding: ``"zeros"``, ``"border"`` or ``"reflection"``.
        fill: Constant read outside the input instead of zero (``padding="zeros"`` only).
        align_corners: See :mod:`stnkit.coords`.

    Returns:
        ``(N, C, H', W')`` or ``(N, C, D', H', W')``, in ``input``'s dtype (float16 and bfloat16
        inputs are sampled in float32 and the result rounded back).

    Example:
        >>> import torch, stnkit
        >>> x = torch.rand(2, 3, 8, 8)
        >>> theta = stnkit.transforms.get("affine").identity().expand(2, 6)
        >>> grid = stnkit.transforms.get("affine").grid(theta, (8, 8))
        >>> torch.allclose(stnkit.sample(x, grid), x, atol=1e-6)
        True
    """
    check_tensor("input", input, ndim=(4, 5), shape="(N, C, H, W) or (N, C, D, H, W)", floating=True)
    d = input.dim() - 2
    check_tensor("grid", grid, ndim=d + 2, shape="(N, H', W', 2)" if d == 2 else "(N, D', H', W', 3)",
                 floating=True)
    if grid.shape[-1] != d:
        raise ValueError(f"grid: expected last dimension {d} for a {input.dim()}-D input, got shape {tuple(grid.shape)}")
    if grid.shape[0] != input.shape[0]:
        raise ValueError(f"grid: batch size {grid.shape[0]} does not match input's {input.shape[0]} "
                         f"(input shape {tuple(input.shape)}, grid shape {tuple(grid.shape)})")
    check_sampling_options(mode, padding, fill)
    if mode == "bicubic" and d == 3:
        raise ValueError("mode: 'bicubic' is only available for 2-D inputs; use 'bilinear' or 'nearest' "
                         "for volumes")
    if mode == "nearest" and grid.requires_grad and torch.is_grad_enabled():
        warnings.warn("mode='nearest' passes no gradient to the grid or theta; the localisation net "
                      "will not learn. Use 'bilinear' or 'bicubic' for training.", stacklevel=2)
    work = torch.float32 if input.dtype in LOW_PRECISION else input.dtype
    x, grid = input.to(work), grid.to(work)
    if fill is None:
        out = F.grid_sample(x, grid, mode=mode, padding_mode=padding, align_corners=align_corners)
    else:
        value = _fill_tensor(fill, x)
        # Every kernel's weights sum to 1, so shifting by the fill makes zero padding read ``fill``.
        out = F.grid_sample(x - value, grid, mode=mode, padding_mode="zeros", align_corners=align_corners) + value
    return out.to(input.dtype)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_fill(fill: object) -> bool:
    if isinstance(fill, Tensor):
        return fill.is_floating_point() or fill.dtype in (torch.int32, torch.int64)
    if isinstance(fill, (list, tuple)):
        return len(fill) > 0 and all(_is_number(v) for v in fill)
    return _is_number(fill)


def _fill_tensor(fill: Fill, input: Tensor) -> Tensor | float:
    c = input.shape[1]
    if _is_number(fill):  # a Python number: no tensor, no host-to-device copy
        return float(fill)  # type: ignore[arg-type]
    if isinstance(fill, Tensor):
        value = fill.to(dtype=input.dtype, device=input.device, non_blocking=True)
    else:  # a sequence: built on the host, copied without making the host wait (pageable memory
        # is staged before the call returns, so the temporary may go)
        value = torch.tensor(fill, dtype=input.dtype).to(input.device, non_blocking=True)
    if value.dim() == 0:
        return value
    if value.dim() != 1 or value.shape[0] not in (1, c):
        raise ValueError(f"fill: expected a float or {c} values (one per channel), got shape {tuple(value.shape)}")
    return value.view(1, -1, *([1] * (input.dim() - 2)))  # (1, C, 1, 1[, 1])
