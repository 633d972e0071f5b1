"""``reg-unet``: a small U-Net localisation net that predicts a dense field for 2-D registration.

The input is the moving and the fixed image stacked on channels, ``(N, 2, H, W)``; the U-Net
(:class:`FieldUNet`) outputs a ``(N, 2, H/2, W/2)`` field (channel 0 = x) that a
:class:`stnkit.SpatialTransformer` with ``regression=False`` reads as the ``theta`` of a dense
family (``displacement`` or ``velocity``, chosen by ``--transform``) and uses to warp the moving
image (channel 0). The field's last conv starts at zero, so a new model is the identity warp.

Example:
    >>> import torch
    >>> model = registration_unet((2, 28, 28), 2, transform="velocity", channels=(4, 8))
    >>> x = torch.rand(3, 2, 28, 28)
    >>> model(x).shape, bool(torch.allclose(model(x), x[:, :1], atol=1e-5))  # starts as the identity
    (torch.Size([3, 1, 28, 28]), True)
    >>> model.field(x).shape  # the displacement field at the image's resolution
    torch.Size([3, 2, 28, 28])
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validate import check_positive_int, check_tensor
from ...fields import resize_field
from ...module import SpatialTransformer
from ...transforms.displacement import Displacement
from .network import MODELS

#: Families whose theta is a 2-D dense field (what the U-Net outputs).
FIELD_FAMILIES = ("displacement", "velocity")


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.LeakyReLU(0.2))


class FieldUNet(nn.Module):
    """Two-level U-Net: ``(N, C, H, W)`` -> a field ``(N, 2, ceil(H/2), ceil(W/2))``.

    conv ``c1`` at full resolution -> conv ``c2`` stride 2 -> conv ``c2`` stride 2 -> upsample x2,
    concatenate the half-resolution features -> conv ``c1`` -> conv 2 (the field, registered last
    so that ``SpatialTransformer(regression=False)`` zeroes it).

    Args:
        in_channels: ``C`` (2: moving and fixed).
        channels: ``(c1, c2)``.
    """

    def __init__(self, in_channels: int = 2, channels: Sequence[int] = (16, 32)) -> None:
        super().__init__()
        if len(channels) != 2:
            raise ValueError(f"channels: expected two widths (c1, c2), got {tuple(channels)!r}")
        c1, c2 = (check_positive_int("channels", c) for c in channels)
        self.enc1 = _conv(check_positive_int("in_channels", in_channels), c1)
        self.enc2 = _conv(c1, c2, stride=2)
        self.bottom = _conv(c2, c2, stride=2)
        self.dec = _conv(2 * c2, c1)
        self.out = nn.Conv2d(c1, 2, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        half = self.enc2(self.enc1(x))  # (N, c2, H/2, W/2)
        up = F.interpolate(self.bottom(half), size=half.shape[2:], mode="nearest")  # (N, c2, H/2, W/2)
        return self.out(self.dec(torch.cat([up, half], 1)))  # (N, 2, H/2, W/2)


class Registration(nn.Module):
    """A registration model: warps the moving image (channel 0) onto the fixed one (channel 1).

    Args:
        in_shape: ``(2, H, W)``.
        transform: ``displacement`` or ``velocity``.
        transform_options: Options for the family (default ``field_size`` = the U-Net's output,
            ``(ceil(H/2), ceil(W/2))``).
        channels: U-Net widths ``(c1, c2)``.

    Shape:
        - input: ``(N, 2, H, W)`` moving and fixed.
        - output: the warped moving image ``(N, 1, H, W)``.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        transform: str = "velocity",
        transform_options: dict[str, Any] | None = None,
        channels: Sequence[int] = (16, 32),
    ) -> None:
        super().__init__()
        if tuple(in_shape)[0] != 2:
            raise ValueError(f"in_shape: expected (2, H, W) (moving and fixed stacked), got {tuple(in_shape)}")
        if transform not in FIELD_FAMILIES:
            raise ValueError(
                f"transform: expected one of {', '.join(FIELD_FAMILIES)} for a registration model, got {transform!r}"
            )
        self.in_shape = tuple(in_shape)
        half = tuple(-(-s // 2) for s in self.in_shape[1:])
        options = {"field_size": half, **(transform_options or {})}
        size = options["field_size"]
        if (tuple(size) if isinstance(size, (list, tuple)) else (size, size)) != half:
            raise ValueError(
                f"transform_options: field_size must be the U-Net's output {half}, got {options['field_size']!r}"
            )
        self.st = SpatialTransformer(FieldUNet(2, channels), transform, regression=False, transform_options=options)
        self.spatial_transformers = nn.ModuleList([self.st])

    def forward(self, x: Tensor, return_theta: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        check_tensor("x", x, ndim=4, shape="(N, 2, H, W)", floating=True)
        return self.st(x, source=x[:, :1], return_theta=return_theta)  # (N, 1, H, W)

    def field(self, x: Tensor, theta: Tensor | None = None) -> Tensor:
        """The displacement field ``(N, 2, H, W)`` (normalised units) of the warp of ``x`` (or of
        ``theta`` already predicted): the velocity's flow for ``velocity``."""
        theta = self.st.predict(x) if theta is None else theta
        return resize_field(cast(Displacement, self.st.transform).displacement(theta), x.shape[2:])  # (N, 2, H, W)

    def smoothness(self, theta: Tensor) -> Tensor:
        """Per-sample mean squared spatial derivative of the predicted field (displacement or
        velocity), per normalised unit of length (dimensionless): ``(N,)``."""
        u = cast(Displacement, self.st.transform).field(theta)  # (N, 2, h, w)
        h, w = u.shape[2:]
        dx = (u[..., :, 1:] - u[..., :, :-1]) * (w / 2)  # (N, 2, h, w-1)
        dy = (u[..., 1:, :] - u[..., :-1, :]) * (h / 2)  # (N, 2, h-1, w)
        return dx.pow(2).flatten(1).mean(1) + dy.pow(2).flatten(1).mean(1)


@MODELS.register(name="reg-unet")
def registration_unet(
    in_shape: Sequence[int],
    num_classes: int,
    transform: str = "velocity",
    downsample: bool = False,
    transform_options: dict[str, Any] | None = None,
    channels: Sequence[int] = (16, 32),
) -> Registration:
    """a U-Net predicting a displacement or velocity field that warps moving onto fixed. Options: channels.

    Args:
        in_shape: ``(2, H, W)``: moving and fixed stacked.
        num_classes: Ignored (the output is an image).
        transform: ``displacement`` or ``velocity``.
        downsample: Ignored.
        transform_options: Options for the family (``steps``, ``padding`` for ``velocity``).
        channels: U-Net widths ``(c1, c2)``.
    """
    return Registration(in_shape, transform, transform_options, channels)


registration_unet.families = FIELD_FAMILIES  # the only families it takes
registration_unet.in_channels = 2  # moving and fixed stacked
