"""Builders for the paper's localisation nets (any ``nn.Module`` works as well).

Each builder returns the body of the net, ending in a feature vector; the
:class:`stnkit.SpatialTransformer` appends the regression layer itself. Every returned module has an
``out_features`` attribute so the transformer knows the regression layer's input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ._validate import check_positive_int


class LocalisationNet(nn.Sequential):
    """An ``nn.Sequential`` that records the size of its output feature vector."""

    def __init__(self, *layers: nn.Module, out_features: int) -> None:
        super().__init__(*layers)
        self.out_features = out_features


def fc_localisation(in_shape: Sequence[int], hidden: Sequence[int] = (32, 32, 32)) -> LocalisationNet:
    """The paper's ST-FCN localisation net: fully connected layers with ReLU.

    Args:
        in_shape: Shape of one input sample, e.g. ``(1, 28, 28)``.
        hidden: Units per hidden layer (paper: three layers of 32).

    Returns:
        Module mapping ``(N, *in_shape)`` to ``(N, hidden[-1])``.

    Example:
        >>> import torch
        >>> net = fc_localisation((1, 28, 28))
        >>> net(torch.zeros(5, 1, 28, 28)).shape, net.out_features
        (torch.Size([5, 32]), 32)
    """
    if not hidden:
        raise ValueError("hidden: expected at least one layer size, got an empty sequence")
    in_features = 1
    for s in in_shape:
        in_features *= check_positive_int("in_shape", s)
    layers: list[nn.Module] = [nn.Flatten()]
    for units in hidden:
        layers += [nn.Linear(in_features, check_positive_int("hidden", units)), nn.ReLU(inplace=True)]
        in_features = units
    return LocalisationNet(*layers, out_features=in_features)


def conv_localisation(
    in_shape: Sequence[int],
    channels: Sequence[int] = (20, 20),
    kernel_size: int = 5,
    hidden: int = 20,
    downsample: int = 2,
) -> LocalisationNet:
    """The paper's ST-CNN localisation net, in 2-D or 3-D.

    Input downsampled ``downsample`` x (average pool) -> conv ``channels[0]`` ``k x k`` -> max-pool
    2 -> ReLU -> conv ``channels[1]`` -> ReLU ... -> flatten -> FC ``hidden`` -> ReLU.

    Args:
        in_shape: ``(C, H, W)`` or ``(C, D, H, W)`` of one input sample.
        channels: Filters per conv layer (paper: 20, 20).
        kernel_size: Conv kernel size (paper: 5).
        hidden: Units of the last fully connected layer (paper: 20).
        downsample: Initial average-pool factor (paper: 2); 1 disables it.

    Returns:
        Module mapping ``(N, *in_shape)`` to ``(N, hidden)``.

    Example:
        >>> import torch
        >>> conv_localisation((1, 60, 60))(torch.zeros(2, 1, 60, 60)).shape
        torch.Size([2, 20])
    """
    if len(in_shape) not in (3, 4):
        raise ValueError(f"in_shape: expected (C, H, W) or (C, D, H, W), got {tuple(in_shape)}")
    dims = len(in_shape) - 1
    conv, avg, mx = (nn.Conv2d, nn.AvgPool2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.AvgPool3d, nn.MaxPool3d)
    check_positive_int("kernel_size", kernel_size)
    layers: list[nn.Module] = []
    if check_positive_int("downsample", downsample) > 1:
        layers.append(avg(downsample))
    c = in_shape[0]
    for i, out_c in enumerate(channels):
        layers.append(conv(c, check_positive_int("channels", out_c), kernel_size))
        if i == 0:
            layers.append(mx(2))
        layers.append(nn.ReLU(inplace=True))
        c = out_c
    layers.append(nn.Flatten())
    body = nn.Sequential(*layers)
    with torch.no_grad():
        try:
            flat = body(torch.zeros(1, *in_shape)).shape[1]
        except RuntimeError as err:
            raise ValueError(
                f"in_shape: {tuple(in_shape)} is too small for this localisation net "
                f"(downsample={downsample}, kernel_size={kernel_size}): {err}"
            ) from None
    return LocalisationNet(*layers, nn.Linear(flat, hidden), nn.ReLU(inplace=True), out_features=hidden)
