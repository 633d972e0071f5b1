"""Spatial transformers in series (``st-cnn-multi``): where each one reads, mapped back onto the input.

Transformer ``k`` of a series warps the feature map that transformers ``0 .. k-1`` (and the layers
between) made. Its theta maps a point of its output frame to a point of its input frame, in
normalised coordinates; the feature maps between keep the image's normalised frame ("same" convs,
2x pools), so the point it reads in the image is ``warp_0(warp_1(... warp_k(p)))``: its outline and
sampling grid are mapped back through the ``warp_points`` of every transformer before it. The frames
are only approximately the same across resolutions (odd sizes halve with a remainder), so the
drawn regions are approximate by up to a feature-map pixel.

A model declares a series by ``transformers_in_series = True`` and ``forward(x, return_thetas=True)``
giving each transformer's theta in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from ...coords import normalized_to_pixel, pixel_to_normalized
from ...module import SpatialTransformer
from ...sampling import sample
from .geometry import SamplingRegion, sampling_region


def map_back(points: Tensor, sts: Sequence[SpatialTransformer], thetas: Sequence[Tensor]) -> Tensor:
    """Normalised points ``(N, K, 2)`` of the last transformer's input frame -> the first one's input
    (the image), through ``warp_points`` of ``sts[-1], ..., sts[0]`` (``thetas`` in series order)."""
    for st, theta in zip(reversed(sts), reversed(thetas), strict=True):
        points = st.transform.warp_points(theta, points)  # (N, K, 2)
    return points


def _region_back(
    region: SamplingRegion,
    size: tuple[int, ...],
    align_corners: bool,
    sts: Sequence[SpatialTransformer],
    thetas: Sequence[Tensor],
) -> SamplingRegion:
    """``region`` in image pixels of the last transformer's input frame -> the image's, via :func:`map_back`."""

    def back(pixels: Tensor) -> Tensor:
        flat = pixels.reshape(pixels.shape[0], -1, 2)  # (n, K, 2)
        normalised = pixel_to_normalized(flat, size, align_corners)
        mapped = map_back(normalised, sts, thetas)
        return normalized_to_pixel(mapped, size, align_corners).reshape(pixels.shape)

    def back_optional(pixels: Tensor | None) -> Tensor | None:
        return None if pixels is None else back(pixels)

    return SamplingRegion(
        back(region.outline), back(region.corners), back_optional(region.control_points), back_optional(region.grid)
    )


def series_regions(
    model: nn.Module, images: Tensor, outline: str = "edges"
) -> list[tuple[Tensor, Tensor, SamplingRegion]]:
    """For each transformer of the series: what it reads, resampled from the image, its theta, and
    its region on the image.

    Args:
        model: Declares ``transformers_in_series``; ``model(x, return_thetas=True) -> (out, thetas)``.
        images: ``(n, C, H, W)`` model inputs.
        outline: See :func:`sampling_region`.

    Returns:
        ``[(view (n, C, H, W), theta (n, P), region in image pixels)]``, one per transformer.
    """
    sts = list(cast("Sequence[SpatialTransformer]", model.spatial_transformers))
    size = tuple(images.shape[2:])
    with torch.no_grad():
        _, thetas = model(images, return_thetas=True)
    results = []
    for k, (st, theta) in enumerate(zip(sts, thetas, strict=True)):
        earlier_sts, earlier = sts[:k], thetas[:k]
        # The region in transformer k's own input frame (drawn at the image's size), then mapped back.
        own = sampling_region(st.transform, theta, size, size, align_corners=st.align_corners, outline=outline)
        region = _region_back(own, size, st.align_corners, earlier_sts, earlier)
        grid = st.transform.grid(theta, size, st.align_corners)  # (n, H, W, 2) in k's input frame
        grid = map_back(grid.reshape(len(theta), -1, 2), earlier_sts, earlier).reshape(grid.shape)
        view = sample(images, grid, align_corners=st.align_corners)  # (n, C, H, W)
        results.append((view, theta, region))
    return results
