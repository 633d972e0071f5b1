"""Transform parameters in human units (degrees, scale factors, pixels) -> ``theta``.

``theta`` follows :mod:`stnkit.coords`: it maps a normalised point of the **output** canvas to the
normalised point of the **source** image that it reads. The helpers here start from the forward
map (where a source pixel lands on the canvas, in pixels relative to the centres, x right,
y down) and return its inverse as ``theta``.

Rotation convention: a positive angle turns the digit **counter-clockwise as seen on screen**
(the convention of ``torchvision.transforms.functional.rotate``). With y pointing down the
forward map of a counter-clockwise turn by ``a`` is ``[[cos a, sin a], [-sin a, cos a]]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def similarity_theta(
    angle: Tensor,
    scale: Tensor,
    offset_x: Tensor,
    offset_y: Tensor,
    canvas: Sequence[int],
    source: Sequence[int] = (28, 28),
) -> Tensor:
    """Affine ``theta`` placing a rotated, scaled source image on a canvas.

    The forward map sends a source point at pixel offset ``u`` from the source centre to
    ``scale * R(angle) u + (offset_x, offset_y)`` pixels from the canvas centre.

    Args:
        angle: ``(N,)`` degrees, positive = counter-clockwise on screen.
        scale: ``(N,)`` size factor (``> 0``).
        offset_x, offset_y: ``(N,)`` pixels from the canvas centre to the digit's centre
            (x right, y down).
        canvas: Output ``(H, W)``.
        source: Source ``(H, W)``.

    Returns:
        ``(N, 6)`` parameters of the ``"affine"`` family (output -> source).
    """
    a = torch.deg2rad(angle)
    c, s = torch.cos(a), torch.sin(a)
    sx, sy = 2.0 / source[1], 2.0 / source[0]  # source pixels -> normalised
    half_w, half_h = canvas[1] / 2.0, canvas[0] / 2.0  # canvas normalised -> pixels
    # Inverse of the forward rotation [[c, s], [-s, c]] is [[c, -s], [s, c]]; divide by the scale.
    r00, r01, r10, r11 = c / scale, -s / scale, s / scale, c / scale
    t0 = -(r00 * offset_x + r01 * offset_y)  # source pixels
    t1 = -(r10 * offset_x + r11 * offset_y)
    rows = [sx * r00 * half_w, sx * r01 * half_h, sx * t0, sy * r10 * half_w, sy * r11 * half_h, sy * t1]
    return torch.stack(rows, dim=1)  # (N, 6)


def box_half_extent(angle: Tensor, scale: Tensor, box: float) -> Tensor:
    """Half the width (= height) of the axis-aligned box around a ``box x box`` square turned by
    ``angle`` degrees and scaled by ``scale``: ``scale * box / 2 * (|cos a| + |sin a|)``, ``(N,)``."""
    a = torch.deg2rad(angle)
    return scale * (box / 2.0) * (torch.cos(a).abs() + torch.sin(a).abs())


def homography_theta(corner_offsets: Tensor, scale: Tensor, size: Sequence[int]) -> Tensor:
    """``"projective"`` ``theta`` of the paper's P distortion.

    The forward homography sends the four corners of the image (scaled by ``scale`` about the
    centre) to those corners moved by ``corner_offsets`` pixels; ``theta`` is its inverse,
    mapping output points to the source points they read. Solved in float64.

    Args:
        corner_offsets: ``(N, 4, 2)`` pixels ``(dx, dy)`` for the corners in the order
            top-left, top-right, bottom-right, bottom-left.
        scale: ``(N,)``.
        size: Image ``(H, W)`` (output = source size).

    Returns:
        ``(N, 8)``.
    """
    n = scale.shape[0]
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    to_norm = torch.tensor([2.0 / size[1], 2.0 / size[0]], dtype=torch.float64)
    dest = scale.double().view(n, 1, 1) * corners + corner_offsets.double() * to_norm  # (N, 4, 2) output
    src = corners.expand(n, 4, 2)  # (N, 4, 2) source
    u, v = dest.unbind(-1)  # (N, 4) each
    x, y = src.unbind(-1)
    zero, one = torch.zeros_like(u), torch.ones_like(u)
    # x = (h0 u + h1 v + h2) / (h6 u + h7 v + 1), y = (h3 u + h4 v + h5) / (h6 u + h7 v + 1)
    rows_x = torch.stack([u, v, one, zero, zero, zero, -u * x, -v * x], dim=-1)  # (N, 4, 8)
    rows_y = torch.stack([zero, zero, zero, u, v, one, -u * y, -v * y], dim=-1)  # (N, 4, 8)
    system = torch.cat([rows_x, rows_y], dim=1)  # (N, 8, 8)
    rhs = torch.cat([x, y], dim=1).unsqueeze(-1)  # (N, 8, 1)
    return torch.linalg.solve(system, rhs).squeeze(-1).float()  # (N, 8)


def tps_theta(control: Tensor, offsets: Tensor, scale: Tensor, size: Sequence[int]) -> Tensor:
    """``"tps"`` ``theta`` of the paper's E distortion: control point ``c_i`` of the output reads
    the source at ``(c_i + offset_i) / scale`` (the image is scaled by ``scale``, then each
    control point of the scaled image is displaced by ``offset_i`` pixels).

    Args:
        control: ``(K, 2)`` normalised control points (the family's identity).
        offsets: ``(N, K, 2)`` pixels.
        scale: ``(N,)``.
        size: Image ``(H, W)``.

    Returns:
        ``(N, 2 K)``.
    """
    to_norm = torch.tensor([2.0 / size[1], 2.0 / size[0]], dtype=offsets.dtype, device=offsets.device)
    points = (control + offsets * to_norm) / scale.view(-1, 1, 1)  # (N, K, 2)
    return points.flatten(1)  # (N, 2K)


def worst_box_half_extent(scale_max: float, angles: tuple[float, float], box: float) -> float:
    """The largest :func:`box_half_extent` over an angle range (for checking a canvas fits)."""
    lo, hi = angles
    worst = max(
        abs(math.cos(math.radians(a))) + abs(math.sin(math.radians(a)))
        for a in [lo, hi] + [45.0 + 90.0 * k for k in range(-4, 5) if lo <= 45.0 + 90.0 * k <= hi]
    )
    return scale_max * box / 2.0 * worst
