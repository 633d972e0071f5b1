"""The one network shape every registered model has: spatial transformers -> 2x pool -> classifier.

A model is a :class:`TransformerClassifier`: zero or more spatial transformers that each see the
whole input (their outputs concatenated along channels), an optional 2x average pool (the paper's
``downsample`` for the 42x42 RTS and 60x60 TC inputs) and a classifier with three weight layers.
The building blocks are plain functions returning ``nn.Sequential``s; the module only wires them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from ..._registry import Registry
from ..._validate import check_positive_int, check_tensor
from ...module import SpatialTransformer
from .first_conv import FirstConv2d

# The leaf registries of this package: zoo.py registers the models, this module the backbones.
MODELS: Registry = Registry("model")
BACKBONES: Registry = Registry("backbone")


@BACKBONES.register(name="fcn")
def fc_classifier(in_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (128, 128)) -> nn.Sequential:
    """The paper's FCN classifier: flatten -> ``len(hidden)`` ReLU layers -> classification layer.

    Args:
        in_shape: ``(C, H, W)`` of one input sample.
        num_classes: Number of classes.
        hidden: Units of the hidden layers (paper: two layers; 128 each keeps the parameter count
            close to the CNN's).

    Returns:
        Module mapping ``(N, C, H, W)`` to logits ``(N, num_classes)``.
    """
    features = 1
    for s in in_shape:
        features *= check_positive_int("in_shape", s)
    layers: list[nn.Module] = [nn.Flatten()]  # (N, C*H*W)
    for units in hidden:
        layers += [nn.Linear(features, check_positive_int("hidden", units)), nn.ReLU(inplace=True)]
        features = units
    layers.append(nn.Linear(features, check_positive_int("num_classes", num_classes)))
    return nn.Sequential(*layers)


@BACKBONES.register(name="cnn")
def conv_classifier(
    in_shape: Sequence[int],
    num_classes: int,
    channels: Sequence[int] = (32, 64),
    kernel_sizes: Sequence[int] = (9, 7),
    padding: Sequence[int] = (4, 0),
) -> nn.Sequential:
    """The paper's CNN classifier: conv 9x9 -> max-pool 2 -> conv 7x7 -> max-pool 2 -> classifier.

    The 9x9 convolution is zero-padded by 4 (it keeps the size) and the 7x7 one is not, so the
    kernels fit every input of the paper: 28x28 -> 28 -> 14 -> 8 -> 4 (R, P, E); 21x21 (RTS after
    the 2x pool) -> 21 -> 10 -> 4 -> 2; 30x30 (TC after the 2x pool) -> 30 -> 15 -> 9 -> 4.
    Unpadded, a 9x9 and then a 7x7 kernel leave nothing of a 21x21 input (21 -> 13 -> 6 -> 0);
    padding both ("same") also fits but costs 3-4x the compute for no gain on digits. The first
    conv is a :class:`~.first_conv.FirstConv2d` (an ``nn.Conv2d`` with a fast input gradient for a
    single input channel, which a transformer in front of the classifier needs).

    Args:
        in_shape: ``(C, H, W)`` of one input sample.
        num_classes: Number of classes.
        channels: Filters of the two conv layers (32 and 64 is the usual reading of the paper).
        kernel_sizes: Kernel sizes of the two conv layers (paper: 9 and 7).
        padding: Zero padding of each conv layer.

    Returns:
        Module mapping ``(N, C, H, W)`` to logits ``(N, num_classes)``.
    """
    if len(in_shape) != 3:
        raise ValueError(f"in_shape: expected (C, H, W), got {tuple(in_shape)}")
    if not len(channels) == len(kernel_sizes) == len(padding):
        raise ValueError(
            f"channels: expected one entry per conv layer like kernel_sizes {tuple(kernel_sizes)} and "
            f"padding {tuple(padding)}, got {tuple(channels)}"
        )
    c, h, w = (check_positive_int("in_shape", s) for s in in_shape)
    layers: list[nn.Module] = []
    for out_c, k, pad in zip(channels, kernel_sizes, padding, strict=True):
        check_positive_int("kernel_sizes", k)
        check_positive_int("padding", pad, minimum=0)
        h, w = h + 2 * pad - k + 1, w + 2 * pad - k + 1  # after the conv
        if h < 2 or w < 2:
            raise ValueError(
                f"in_shape: {tuple(in_shape)} is too small for conv {tuple(kernel_sizes)} + 2x pool "
                f"stages with padding {tuple(padding)}"
            )
        conv = FirstConv2d if not layers else nn.Conv2d  # fast input gradient behind a transformer
        layers += [
            conv(c, check_positive_int("channels", out_c), k, padding=pad),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        ]
        c, h, w = out_c, h // 2, w // 2
    layers += [nn.Flatten(), nn.Linear(c * h * w, check_positive_int("num_classes", num_classes))]  # (N, c*h*w)
    return nn.Sequential(*layers)


class TransformerClassifier(nn.Module):
    """Spatial transformers (optional) -> 2x average pool (optional) -> classifier.

    Args:
        classifier: Maps the (pooled) transformer output to logits.
        in_shape: ``(C, H, W)`` the model expects.
        spatial_transformers: Applied in parallel to the input; outputs concatenated along
            channels (two 2-channel transformers give 4 channels). Empty: the input goes straight on.
        downsample: Put a 2x average pool in front of the classifier (paper: RTS and TC).

    Shape:
        - input: ``(N, *in_shape)`` float.
        - output: logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        classifier: nn.Module,
        in_shape: Sequence[int],
        spatial_transformers: Sequence[SpatialTransformer] = (),
        downsample: bool = False,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.transformers = nn.ModuleList(spatial_transformers)
        self.downsample = bool(downsample)
        self.pool = nn.AvgPool2d(2) if downsample else nn.Identity()
        self.classifier = classifier

    @property
    def spatial_transformers(self) -> list[SpatialTransformer]:
        """The spatial transformers, in order (empty for the plain FCN and CNN)."""
        return cast("list[SpatialTransformer]", list(self.transformers))

    def transform(self, x: Tensor) -> Tensor:
        """What the transformers make of ``x``: ``(N, C', H, W)`` (``x`` itself if there are none)."""
        self._check_input(x)
        if not self.transformers:
            return x
        return torch.cat([st(x) for st in self.transformers], dim=1)  # (N, sum of C_i, H, W)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(self.transform(x)))

    def _check_input(self, x: Tensor) -> None:
        check_tensor("x", x, ndim=4, shape="(N, C, H, W)", floating=True)
        if tuple(x.shape[1:]) != self.in_shape:
            c, h, w = self.in_shape
            raise ValueError(f"x: this model expects images of shape (N, {c}, {h}, {w}), got shape {tuple(x.shape)}")

    def extra_repr(self) -> str:
        return f"in_shape={self.in_shape}, downsample={self.downsample}"
