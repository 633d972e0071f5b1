"""The whole spatial transform as one pure function: theta -> grid -> sample."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ._antialias import matrix_scale
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
    rank = family.ndim + 2
    check_tensor("input", input, ndim=rank,
                 shape="(N, C, H, W)" if rank == 4 else "(N, C, D, H, W)", floating=True)
    family._check_theta(theta)
    check_same_batch("theta", theta, "input", input)
    check_same_device("theta", theta, "input", input)
    check_sampling_options(mode, padding, fill, align_corners, antialias)
    check_volume_options(mode, antialias, family.ndim)
    check_bool("check_finite", check_finite)
    if check_finite:
        check_theta("theta", theta)
    size = tuple(input.shape[2:]) if size is None else family._check_size(size)
    work = torch.float32 if input.dtype in LOW_PRECISION else input.dtype
    check_allocation("grid", (input.shape[0], *size, family.ndim), work)
    # Autocast would run the grid's GEMM in bfloat16/float16 (0.17 px TPS grid error): leave it.
    with torch.autocast(input.device.type, enabled=False):
        grid = warp_grid(family, theta.to(work), size, align_corners)  # fast path: see stnkit._fast_warp
        scale = None
        if antialias and isinstance(family, MatrixTransform) and not family.projective:  # one Jacobian per sample
            scale = matrix_scale(family.matrix(theta.to(work))[:, :2, :2], tuple(input.shape[2:]), size, align_corners)
        out = _sample(input, grid, mode, padding, fill, align_corners, antialias, scale)  # in work, back to input.dtype
    return out.to(input.dtype)
