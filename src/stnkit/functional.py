"""The whole spatial transform as one pure function: theta -> grid -> sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor

from ._antialias import local_scale, matrix_scale
from ._fast_warp import warp_grid
from ._validate import check_bool, check_same_batch, check_same_device, check_tensor
from .errors import check_allocation, check_theta
from .sampling import LOW_PRECISION, Fill, _sample, check_sampling_options, check_volume_options
from .transforms import MatrixTransform, Transform, get

# Families built by name, kept so that their theta-independent work (the TPS system and output
# basis, base grids) is done once, not on every call.
_FAMILIES: dict[str, Transform] = {}


def _family(transform: str | Transform) -> Transform:
    if isinstance(transform, str) and transform in _FAMILIES:
        return _FAMILIES[transform]
    family = get(transform)
    if isinstance(transform, str):
        _FAMILIES[transform] = family
    return family


def _check_input(family: Transform, input: Tensor) -> None:
    rank = family.ndim + 2
    check_tensor("input", input, ndim=rank, shape="(N, C, H, W)" if rank == 4 else "(N, C, D, H, W)", floating=True)


def _check_options(
    family: Transform,
    input: Tensor,
    theta: Tensor,
    size: Sequence[int] | None,
    mode: str,
    padding: str,
    fill: Fill,
    align_corners: bool,
    antialias: bool,
    check_finite: bool,
) -> tuple[tuple[int, ...], torch.dtype]:
    """The checks :func:`warp` and :func:`warp_heads` share (``theta``: ``(M, P)``, one row per
    grid); returns the output size and the working dtype."""
    check_same_device("theta", theta, "input", input)
    check_sampling_options(mode, padding, fill, align_corners, antialias)
    check_volume_options(mode, antialias, family.ndim)
    check_bool("check_finite", check_finite)
    if check_finite:
        check_theta("theta", theta)
    size = tuple(input.shape[2:]) if size is None else family._check_size(size)
    work = torch.float32 if input.dtype in LOW_PRECISION else input.dtype
    check_allocation("grid", (theta.shape[0], *size, family.ndim), work)
    return size, work


def warp(
    input: Tensor,
    theta: Tensor,
    transform: str | Transform = "affine",
    size: Sequence[int] | None = None,
    *,
    mode: str = "bilinear",
    padding: str = "zeros",
    fill: Fill = None,
    align_corners: bool = False,
    antialias: bool = False,
    check_finite: bool = True,
) -> Tensor:
    """Warps ``input`` by ``theta``: output pixel ``p`` reads ``input`` at ``T_theta(p)``.

    float16/bfloat16 inputs are warped in float32 (grid coordinates in 8 bits of mantissa are
    off by a good part of a pixel) and the result is cast back to the input's dtype. Under
    ``torch.autocast`` the grid and the sampling leave autocast for the same reason (they run in
    the input's dtype, float32 for a low-precision input).

    Args:
        input: ``(N, C, H, W)`` (``(N, C, D, H, W)`` for 3-D families), floating point.
        theta: ``(N, num_params)`` of the family.
        transform: A family name from :func:`stnkit.transforms.list_transforms` or an instance.
        size: Output ``(H', W')`` (or ``(D', H', W')``); default: the input's size.
        mode, padding, fill, align_corners, antialias: See :func:`stnkit.sample` (``antialias``:
            prefilter where the warp shrinks the image, 2-D families only).
        check_finite: Apply the non-finite policy of :mod:`stnkit.errors` to ``theta``: on the CPU
            raise :class:`~stnkit.errors.NonFiniteThetaError` now; on accelerators record a device
            flag (no sync) that :func:`stnkit.errors.raise_pending` raises. Skipped when compiling.

    Returns:
        ``(N, C, H', W')`` (or ``(N, C, D', H', W')``) in ``input``'s dtype.

    Example:
        >>> import torch, stnkit
        >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 2, 3] = 1   # a dot right of centre
        >>> theta = torch.tensor([[0.4, 0.0]])               # read 0.4 to the right
        >>> y = stnkit.warp(x, theta, "translation")
        >>> divmod(int(y.argmax()), 5)                       # the dot moved one pixel left
        (2, 2)
    """
    family = _family(transform)
    _check_input(family, input)
    family._check_theta(theta)
    check_same_batch("theta", theta, "input", input)
    size, work = _check_options(family, input, theta, size, mode, padding, fill, align_corners, antialias, check_finite)
    # Autocast would run the grid's GEMM in bfloat16/float16 (0.17 px TPS grid error): leave it.
    with torch.autocast(input.device.type, enabled=False):
        grid = warp_grid(family, theta.to(work), size, align_corners)  # fast path: see stnkit._fast_warp
        scale = None
        if antialias and isinstance(family, MatrixTransform) and not family.projective:  # one Jacobian per sample
            in_hw, out_hw = (input.shape[2], input.shape[3]), cast("tuple[int, int]", size)  # 2-D: (H, W)
            scale = matrix_scale(family.matrix(theta.to(work))[:, :2, :2], in_hw, out_hw, align_corners)
        out = _sample(input, grid, mode, padding, fill, align_corners, antialias, scale)  # in work, back to input.dtype
    return out.to(input.dtype)


def warp_heads(
    input: Tensor,
    theta: Tensor,
    transform: str | Transform = "affine",
    size: Sequence[int] | None = None,
    *,
    mode: str = "bilinear",
    padding: str = "zeros",
    fill: Fill = None,
    align_corners: bool = False,
    antialias: bool = False,
    check_finite: bool = True,
) -> Tensor:
    """Warps ``input`` by ``K`` thetas per sample without copying the input ``K`` times.

    The ``K`` grids of a sample are stacked along the first output axis into one
    ``(N, K*H', W', 2)`` grid (``(N, K*D', H', W', 3)`` in 3-D) and read from the one input, so
    memory grows with the outputs, never with ``K`` copies of the input. Each output pixel is the
    same sample as ``warp(input[n], theta[n, k])`` (every grid point is read independently); with
    ``antialias`` each head's local scale is taken on its own grid.

    Args:
        input: ``(N, C, H, W)`` (``(N, C, D, H, W)`` for 3-D families), floating point.
        theta: ``(N, K, num_params)``.
        transform, size, mode, padding, fill, align_corners, antialias, check_finite: See :func:`warp`.

    Returns:
        ``(N, K, C, H', W')`` (or ``(N, K, C, D', H', W')``) in ``input``'s dtype.

    Example:
        >>> import torch, stnkit
        >>> x = torch.rand(2, 3, 8, 8)
        >>> theta = torch.tensor([[0.5, -0.5, -0.5], [0.5, 0.5, 0.5]]).expand(2, 2, 3)
        >>> stnkit.warp_heads(x, theta, "attention", (4, 4)).shape
        torch.Size([2, 2, 3, 4, 4])
    """
    family = _family(transform)
    _check_input(family, input)
    check_tensor("theta", theta, ndim=3, shape="(N, K, num_params)", floating=True)
    if theta.shape[0] != input.shape[0]:
        raise ValueError(
            f"theta: batch size {theta.shape[0]} does not match input's {input.shape[0]} "
            f"(theta shape {tuple(theta.shape)}, input shape {tuple(input.shape)})"
        )
    if theta.shape[1] < 1:
        raise ValueError(f"theta: expected at least one head (K >= 1), got shape {tuple(theta.shape)}")
    n, k = theta.shape[:2]
    flat = theta.reshape(n * k, theta.shape[2])  # (N*K, P)
    family._check_theta(flat)
    size, work = _check_options(family, input, flat, size, mode, padding, fill, align_corners, antialias, check_finite)
    # Autocast would run the grid's GEMM in bfloat16/float16 (0.17 px TPS grid error): leave it.
    with torch.autocast(input.device.type, enabled=False):
        grid = warp_grid(family, flat.to(work), size, align_corners)  # (N*K, *size, ndim)
        scale = None
        if antialias:  # per head, on its own grid, then laid out like the stacked grid
            in_hw, out_hw = (input.shape[2], input.shape[3]), cast("tuple[int, int]", size)  # 2-D: (H, W)
            if isinstance(family, MatrixTransform) and not family.projective:
                scale = matrix_scale(family.matrix(flat.to(work))[:, :2, :2], in_hw, out_hw, align_corners)
                scale = scale.view(n * k, 1, 1).expand(n * k, *size)  # (N*K, H', W')
            else:
                scale = local_scale(grid, in_hw, align_corners)  # (N*K, H', W')
            scale = scale.reshape(n, k * size[0], *size[1:])  # (N, K*H', W')
        # Stack the heads along the first output axis, keeping the coordinate planes contiguous (the
        # sampler's fast layout, see stnkit._fast_warp): (N*K, nd, *size) -> (N, nd, K*size[0], ...).
        planes = grid.movedim(-1, 1).reshape(n, k, family.ndim, *size).transpose(1, 2)  # (N, nd, K, *size)
        stacked = planes.reshape(n, family.ndim, k * size[0], *size[1:]).movedim(1, -1)  # (N, K*size[0], ..., nd)
        out = _sample(input, stacked, mode, padding, fill, align_corners, antialias, scale)  # (N, C, K*size[0], ...)
        out = out.view(n, out.shape[1], k, *size).transpose(1, 2)  # (N, K, C, *size)
    return out.to(input.dtype)
