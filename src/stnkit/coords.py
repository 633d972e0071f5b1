"""The coordinate convention, defined once and used by every part of ``stnkit``.

* Points are **normalised**: ``-1`` and ``+1`` are the two edges of the image along each axis.
* A point's last dimension is ``(x, y)`` in 2-D and ``(x, y, z)`` in 3-D: x runs along width,
  y along height, z along depth (the same order as :func:`torch.nn.functional.grid_sample`).
* ``align_corners=False`` (the default everywhere): ``-1``/``+1`` are the outer *edges* of the
  border pixels, so pixel ``i`` of ``n`` has its centre at ``(2 i + 1) / n - 1``.
  ``align_corners=True``: ``-1``/``+1`` are the *centres* of the border pixels, so pixel ``i``
  is at ``2 i / (n - 1) - 1``. A caller may choose either, the same way in every function.
* ``theta`` maps an **output** point to the **input** point that it reads.
* Sizes are ``(H, W)`` in 2-D and ``(D, H, W)`` in 3-D.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import Tensor

from ._validate import check_bool

_CACHE_SIZE = 64
_base_grid_cache: OrderedDict[tuple, Tensor] = OrderedDict()


def pixel_centres(
    n: int, align_corners: bool = False, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> Tensor:
    """Normalised coordinates of the centres of ``n`` pixels along one axis.

    Args:
        n: Number of pixels.
        align_corners: See the module docstring.

    Returns:
        Tensor of shape ``(n,)``.

    Example:
        >>> pixel_centres(4).tolist()
        [-0.75, -0.25, 0.25, 0.75]
    """
    check_bool("align_corners", align_corners)
    dtype = dtype or torch.get_default_dtype()
    if align_corners:
        if n <= 1:  # matches torch.nn.functional.affine_grid
            return torch.zeros(n, dtype=dtype, device=device)
        return torch.linspace(-1.0, 1.0, n, dtype=dtype, device=device)
    return (torch.arange(n, dtype=dtype, device=device) * 2 + 1) / n - 1


def base_grid(
    size: Sequence[int],
    align_corners: bool = False,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Homogeneous coordinates of every output pixel centre, cached per size/dtype/device.

    Args:
        size: ``(H, W)`` or ``(D, H, W)``.
        align_corners: See the module docstring.

    Returns:
        ``(H*W, 3)`` rows ``(x, y, 1)`` in row-major pixel order, or ``(D*H*W, 4)`` rows
        ``(x, y, z, 1)``. The tensor is shared between callers: never modify it in place.
    """
    check_bool("align_corners", align_corners)
    dtype = dtype or torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device("cpu")
    key = (tuple(size), align_corners, dtype, device)
    if torch.compiler.is_compiling():
        return _make_base_grid(*key)
    grid = _base_grid_cache.get(key)
    if grid is None:
        with torch.inference_mode(False), torch.no_grad():
            grid = _make_base_grid(*key)
        _base_grid_cache[key] = grid
        if len(_base_grid_cache) > _CACHE_SIZE:
            _base_grid_cache.popitem(last=False)
    else:
        _base_grid_cache.move_to_end(key)
    return grid


def _make_base_grid(size: tuple[int, ...], align_corners: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    axes = [pixel_centres(n, align_corners, dtype=dtype, device=device) for n in size]
    mesh = torch.meshgrid(*axes, indexing="ij")  # each (H, W) or (D, H, W); order (y, x) / (z, y, x)
    coords = [m.reshape(-1) for m in reversed(mesh)]  # x first
    ones = torch.ones_like(coords[0])
    return torch.stack([*coords, ones], dim=-1)  # (H*W, 3) or (D*H*W, 4)


def normalized_to_pixel(points: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Converts normalised ``(x, y[, z])`` points to pixel coordinates (pixel centres at integers).

    Args:
        points: ``(..., 2)`` or ``(..., 3)`` normalised points.
        size: ``(H, W)`` or ``(D, H, W)`` of the image the points refer to.
        align_corners: See the module docstring.

    Returns:
        Tensor of the same shape: column, row (and slice) indices, possibly fractional.

    Example:
        >>> import torch
        >>> normalized_to_pixel(torch.tensor([[-1.0, 1.0], [0.0, 0.0]]), (3, 4)).tolist()
        [[-0.5, 2.5], [1.5, 1.0]]
    """
    check_bool("align_corners", align_corners)
    extent = torch.tensor(list(reversed(list(size))), dtype=points.dtype, device=points.device)  # (W, H[, D])
    if align_corners:
        return (points + 1) / 2 * (extent - 1)
    return ((points + 1) * extent - 1) / 2


def pixel_to_normalized(points: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """Inverse of :func:`normalized_to_pixel`: pixel coordinates to normalised ``(x, y[, z])``.

    With ``align_corners=True`` an axis of one pixel has its centre at 0 (as in
    :func:`pixel_centres`), so every point on that axis maps to 0.

    Example:
        >>> import torch
        >>> pixel_to_normalized(torch.tensor([[0.0, 2.0]]), (4, 4)).tolist()
        [[-0.75, 0.25]]
    """
    check_bool("align_corners", align_corners)
    extent = torch.tensor(list(reversed(list(size))), dtype=points.dtype, device=points.device)  # (W, H[, D])
    if align_corners:
        return torch.where(extent > 1, points / (extent - 1).clamp_min(1) * 2 - 1, torch.zeros_like(points))
    return (points * 2 + 1) / extent - 1
