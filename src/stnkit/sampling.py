"""The sampler: reads an image at the points of a grid (over ``F.grid_sample``)."""

from __future__ import annotations

import warnings
from typing import Sequence

import torch
from torch import Tensor

from ._antialias import antialiased_sample
from ._deterministic import grid_sample
from ._validate import check_bool, check_choice, check_same_device, check_tensor
from .errors import check_allocation, check_theta

MODES = ("bilinear", "nearest", "bicubic")
PADDINGS = ("zeros", "border", "reflection")
#: Input dtypes sampled in float32 (a grid in 8-11 bits of mantissa misses by a good part of a pixel).
LOW_PRECISION = (torch.float16, torch.bfloat16)

Fill = float | Sequence[float] | Tensor | None


def check_sampling_options(mode: str, padding: str, fill: Fill, align_corners: bool = False,
                           antialias: bool = False) -> None:
    """Validates the sampling options (shared by :func:`sample`, :func:`stnkit.warp` and the module)."""
    check_choice("mode", mode, MODES)
    check_choice("padding", padding, PADDINGS)
    check_bool("align_corners", align_corners)
    check_bool("antialias", antialias)
    if fill is not None and not _is_fill(fill):
        raise TypeError(f"fill: expected None, a float, a sequence of floats (one per channel) or a "
                        f"floating-point tensor, got {fill!r}")
    if fill is not None:
        values = torch.as_tensor(fill, dtype=torch.float64).detach()
        if not bool(torch.isfinite(values).all()):
            raise ValueError(f"fill: expected finite values, got {fill!r}")
    if fill is not None and padding != "zeros":
        raise ValueError(f"fill: a constant fill replaces padding='zeros'; got padding={padding!r} with fill={fill!r}")


def check_volume_options(mode: str, antialias: bool, ndim: int, what: str = "inputs") -> None:
    """Refuses the options that only 2-D sampling has (``bicubic``, ``antialias``) for volumes."""
    if ndim != 3:
        return
    if mode == "bicubic":
        raise ValueError(f"mode: 'bicubic' is only available for 2-D {what}; use 'bilinear' or 'nearest' "
                         f"for volumes")
    if antialias:
        raise ValueError(f"antialias: only available for 2-D {what}; got a volume with antialias=True")


def sample(
    input: Tensor,
    grid: Tensor,
    mode: str = "bilinear",
    padding: str = "zeros",
    fill: Fill = None,
    align_corners: bool = False,
    antialias: bool = False,
) -> Tensor:
    """Samples ``input`` at the normalised points of ``grid`` (the same warp for every channel).

    Points outside the input read the padding: ``"zeros"`` (or the constant ``fill``, a float or
    one value per channel), ``"border"`` (nearest edge pixel) or ``"reflection"``. A non-finite
    grid follows the non-finite policy of :mod:`stnkit.errors` (CPU: ``NonFiniteThetaError`` naming
    ``grid``). The fill is
    applied exactly: the in-image weight of each output pixel is sampled in the same call (a
    channel of ones), so pixels inside the image are the zero-padded sample bit for bit whatever
    the fill, and outside pixels blend towards it by their outside weight.

    ``antialias=True`` (2-D only) prefilters where the grid shrinks the image, in proportion to the
    local scale (a mip-map pyramid read at each pixel's level, see :mod:`stnkit._antialias`);
    where it does not shrink by more than 2x the result is bit-equal to ``antialias=False``.

    With ``torch.use_deterministic_algorithms(True)`` on CUDA, bilinear 2-D sampling uses a backward
    without atomics (bitwise repeatable, see :mod:`stnkit._deterministic`).

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
        antialias: Prefilter where the grid shrinks the image (2-D only).

    Returns:
        ``(N, C, H', W')`` or ``(N, C, D', H', W')``, in ``input``'s dtype (float16 and bfloat16
        inputs are sampled in float32 and the result rounded back; a grid of another floating
        dtype is cast to the working dtype).

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
    check_same_device("grid", grid, "input", input)
    check_sampling_options(mode, padding, fill, align_corners, antialias)
    check_volume_options(mode, antialias, d)
    check_theta("grid", grid)  # the non-finite policy of stnkit.errors (raise on CPU, device flag elsewhere)
    return _sample(input, grid, mode, padding, fill, align_corners, antialias)


def _sample(input: Tensor, grid: Tensor, mode: str, padding: str, fill: Fill, align_corners: bool,
            antialias: bool, scale: Tensor | None = None) -> Tensor:
    """:func:`sample` without the argument checks (for callers that made them); ``scale``: the
    local scale for ``antialias`` when the caller knows it (see :func:`stnkit._antialias.antialiased_sample`)."""
    if mode == "nearest" and grid.requires_grad and torch.is_grad_enabled():
        warnings.warn("mode='nearest' passes no gradient to the grid or theta; the localisation net "
                      "will not learn. Use 'bilinear' or 'bicubic' for training.", stacklevel=3)
    work = torch.float32 if input.dtype in LOW_PRECISION else input.dtype
    check_allocation("output", (input.shape[0], input.shape[1] + (fill is not None), *grid.shape[1:-1]), work)
    x, grid = input.to(work), grid.to(work)
    if fill is None:
        return _read(x, grid, mode, padding, align_corners, antialias, scale).to(input.dtype)
    value = _fill_tensor(fill, x, input.dtype)
    both = _read(torch.cat([x, torch.ones_like(x[:, :1])], dim=1), grid, mode, "zeros", align_corners,
                 antialias, scale)  # (N, C+1, ...): the last channel is the in-image weight
    out, outside = both[:, :-1], 1 - both[:, -1:]
    # Inside the image the weights sum to 1 up to rounding: no fill there, so the result is exact.
    outside = torch.where(outside.abs() <= 8 * torch.finfo(work).eps, torch.zeros_like(outside), outside)
    return (out + outside * value).to(input.dtype)


def _read(x: Tensor, grid: Tensor, mode: str, padding: str, align_corners: bool, antialias: bool,
          scale: Tensor | None) -> Tensor:
    if antialias:
        return antialiased_sample(x, grid, mode, padding, align_corners, scale)
    return grid_sample(x, grid, mode, padding, align_corners)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_fill(fill: object) -> bool:
    if isinstance(fill, Tensor):
        return fill.is_floating_point() or fill.dtype in (torch.int32, torch.int64)
    if isinstance(fill, (list, tuple)):
        return len(fill) > 0 and all(_is_number(v) for v in fill)
    return _is_number(fill)


def _fill_tensor(fill: Fill, input: Tensor, out_dtype: torch.dtype) -> Tensor | float:
    c = input.shape[1]
    if isinstance(fill, Tensor) and fill.device.type != "cpu":
        # already on an accelerator: not checked here, reading it would make the host wait
        value = fill.to(dtype=input.dtype, device=input.device)
    else:  # checked on the host, then copied without making the host wait (no sync per call on GPUs)
        host = torch.as_tensor(fill, dtype=input.dtype)
        for dtype in (input.dtype, out_dtype):  # sampled in the working dtype, returned in the input's
            if not bool(torch.isfinite(host.to(dtype)).all()):
                raise ValueError(f"fill: {fill!r} does not fit the sampling dtype {dtype} (largest magnitude "
                                 f"{torch.finfo(dtype).max:.4g})")
        if _is_number(fill):  # a Python number: no tensor, no host-to-device copy
            return float(fill)  # type: ignore[arg-type]
        # pageable memory is staged before the call returns, so the temporary may go
        value = host.to(input.device, non_blocking=True)
    if value.dim() == 0:
        return value
    if value.dim() != 1 or value.shape[0] not in (1, c):
        raise ValueError(f"fill: expected a float or {c} values (one per channel), got shape {tuple(value.shape)}")
    return value.view(1, -1, *([1] * (input.dim() - 2)))  # (1, C, 1, 1[, 1])
