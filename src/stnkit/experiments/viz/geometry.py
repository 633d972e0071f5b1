"""Where a spatial transformer reads: its output frame mapped into the input, in pixel coordinates.

Everything here is a pure function of ``(transform, theta, size)`` computed with the family's own
:meth:`~stnkit.transforms.Transform.warp_points`, so the drawn region is exactly what
:func:`stnkit.warp` samples. Results are in **input pixel coordinates** ``(x, y)`` = (column, row)
with pixel centres at integers (the convention of ``matplotlib.pyplot.imshow``), converted with
:func:`stnkit.coords.normalized_to_pixel`.

Two outlines are available (``outline=``):

* ``"edges"`` (default): the output frame's outer edges, i.e. the boundary of the area the output
  image covers. With ``align_corners=False`` that is the normalised square ``[-1, 1]^2``.
* ``"centres"``: the polygon through the centres of the output's four corner pixels; corner ``k``
  is exactly the input point that the output's corner pixel reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ... import coords
from ..._validate import check_choice, check_size, check_tensor
from ...transforms import Transform, get

OUTLINES = ("edges", "centres")


@dataclass(frozen=True)
class SamplingRegion:
    """The part of the input that a transformer reads, in input pixel coordinates ``(x, y)``.

    Attributes:
        outline: ``(N, 4 * S, 2)``: closed polygon (first point not repeated), ``S`` points per
            side, running top-left -> top-right -> bottom-right -> bottom-left of the output frame.
        corners: ``(N, 4, 2)``: the output frame's corners in the same order (``outline[:, ::S]``).
        control_points: ``(N, K, 2)``: the warped control points (thin plate spline), else ``None``.
        grid: ``(N, L, M, 2)``: ``L`` polylines of ``M`` points, the output frame's grid lines
            warped into the input (a deformed grid), else ``None``.
    """

    outline: Tensor
    corners: Tensor
    control_points: Tensor | None = None
    grid: Tensor | None = None

    def __len__(self) -> int:
        return self.outline.shape[0]

    def select(self, index: int | slice | Tensor) -> SamplingRegion:
        """The region of some samples only (same layout, batch dimension indexed)."""

        def pick(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[index]

        return SamplingRegion(self.outline[index], self.corners[index], pick(self.control_points), pick(self.grid))


def frame_outline(
    size: Sequence[int],
    *,
    align_corners: bool = False,
    outline: str = "edges",
    points_per_side: int = 1,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """The output frame's outline in normalised output coordinates.

    Args:
        size: Output ``(H', W')``.
        align_corners: See :mod:`stnkit.coords`.
        outline: ``"edges"`` (outer edges of the border pixels) or ``"centres"`` (corner pixel
            centres).
        points_per_side: ``S``: points per side, the side's start corner first.

    Returns:
        ``(4 * S, 2)`` normalised ``(x, y)`` points, clockwise on screen from the top-left corner.
    """
    h, w = check_size("size", size, 2)
    check_choice("outline", outline, OUTLINES)
    dtype = dtype or torch.get_default_dtype()
    inset = 0.0 if outline == "centres" else -0.5  # pixel coordinate of the frame's first line
    x0, x1, y0, y1 = inset, w - 1 - inset, inset, h - 1 - inset
    t = torch.arange(points_per_side, dtype=torch.float64) / points_per_side  # (S,) in [0, 1)
    sides = [
        torch.stack([x0 + (x1 - x0) * t, torch.full_like(t, y0)], 1),  # top, left to right
        torch.stack([torch.full_like(t, x1), y0 + (y1 - y0) * t], 1),  # right, downwards
        torch.stack([x1 - (x1 - x0) * t, torch.full_like(t, y1)], 1),  # bottom, right to left
        torch.stack([torch.full_like(t, x0), y1 - (y1 - y0) * t], 1),  # left, upwards
    ]
    pixels = torch.cat(sides, 0)  # (4 S, 2)
    return coords.pixel_to_normalized(pixels, (h, w), align_corners).to(dtype)


def frame_grid(lines: int, points_per_line: int = 24, *, dtype: torch.dtype | None = None) -> Tensor:
    """Grid lines over the normalised output square ``[-1, 1]^2``.

    Args:
        lines: Lines per direction, evenly spaced from -1 to 1 (``>= 2``).
        points_per_line: Points on each line.

    Returns:
        ``(2 * lines, points_per_line, 2)``: horizontal lines first, then vertical ones.
    """
    dtype = dtype or torch.get_default_dtype()
    at = torch.linspace(-1.0, 1.0, lines, dtype=dtype)  # (L,)
    along = torch.linspace(-1.0, 1.0, points_per_line, dtype=dtype)  # (M,)
    fixed, moving = torch.meshgrid(at, along, indexing="ij")  # each (L, M)
    horizontal = torch.stack([moving, fixed], -1)  # (L, M, 2): y fixed
    vertical = torch.stack([fixed, moving], -1)  # (L, M, 2): x fixed
    return torch.cat([horizontal, vertical], 0)  # (2 L, M, 2)


def sampling_region(
    transform: str | Transform,
    theta: Tensor,
    size: Sequence[int],
    input_size: Sequence[int] | None = None,
    *,
    align_corners: bool = False,
    outline: str = "edges",
    points_per_side: int | None = None,
    grid_lines: int | None = None,
) -> SamplingRegion:
    """The input region each sample's transformer reads, from the family's ``warp_points``.

    Args:
        transform: Family name or instance (with the same options as the transformer's, e.g.
            ``grid_size`` for ``tps``).
        theta: ``(N, num_params)``, e.g. from ``SpatialTransformer(x, return_theta=True)``.
        size: The transformer's output ``(H', W')``.
        input_size: The input ``(H, W)``; default ``size``.
        align_corners: The transformer's ``align_corners``.
        outline: ``"edges"`` or ``"centres"``, see the module docstring.
        points_per_side: Outline points per side; default 1 for matrix families (straight sides,
            so the corners suffice) and 16 for others (curved sides).
        grid_lines: Lines per direction of the deformed grid; default ``2 k - 1`` for a ``k x k``
            thin plate spline or piecewise affine mesh (through every control point and half-way
            between), 9 for the field families (``bspline``, ``displacement``, ``velocity``) and
            none for matrix families.

    Returns:
        A :class:`SamplingRegion` in input pixel coordinates, detached from autograd.

    Example:
        >>> import torch, stnkit.experiments.viz
        >>> theta = torch.tensor([[0.5, 0.0, 0.0, 0.0, 0.5, 0.0]])  # zoom 2x on the centre
        >>> r = stnkit.experiments.viz.sampling_region("affine", theta, (8, 8))
        >>> r.corners[0].tolist()  # the middle 4x4 pixels, outer edges
        [[1.5, 1.5], [5.5, 1.5], [5.5, 5.5], [1.5, 5.5]]
    """
    family = get(transform)
    if family.ndim != 2:
        raise ValueError(f"transform: expected a 2-D family, got {family.name!r} ({family.ndim}-D)")
    check_tensor("theta", theta, ndim=2, shape=f"(N, {family.num_params})", floating=True)
    size = check_size("size", size, 2)
    input_size = size if input_size is None else check_size("input_size", input_size, 2)
    check_choice("outline", outline, OUTLINES)
    theta = theta.detach()

    def to_pixels(p: Tensor) -> Tensor:
        return coords.normalized_to_pixel(p, input_size, align_corners)

    per_side = points_per_side if points_per_side is not None else (1 if family.has_matrix else 16)
    frame = frame_outline(
        size, align_corners=align_corners, outline=outline, points_per_side=per_side, dtype=theta.dtype
    ).to(theta.device)  # (4 S, 2)
    ring = to_pixels(family.warp_points(theta, frame))  # (N, 4 S, 2)
    corners = ring[:, ::per_side]  # (N, 4, 2)

    control = getattr(family, "control_points", None)
    warped_control = None
    if isinstance(control, Tensor):
        warped_control = to_pixels(family.warp_points(theta, control.to(theta)))  # (N, K, 2)
    if grid_lines is None:
        k = getattr(family, "grid_size", None)
        # tps / piecewise_affine: through every control point and half-way between; other
        # non-matrix families (bspline, displacement, velocity fields): a 9 x 9 deformed mesh
        grid_lines = 0 if family.has_matrix else 2 * k - 1 if isinstance(k, int) else 9
    grid = None
    if grid_lines:
        lines = frame_grid(max(2, grid_lines), dtype=theta.dtype).to(theta.device)  # (L, M, 2)
        flat = family.warp_points(theta, lines.reshape(-1, 2))  # (N, L*M, 2)
        grid = to_pixels(flat).view(theta.shape[0], *lines.shape)  # (N, L, M, 2)
    return SamplingRegion(ring, corners, warped_control, grid)
