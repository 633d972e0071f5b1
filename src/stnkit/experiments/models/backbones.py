"""More backbones for :data:`~stnkit.experiments.models.network.BACKBONES`: a small built-in ResNet,
and adapters for torchvision and timm networks (with their pretrained weights) when installed.

Every backbone has the interface of the paper's ``fcn`` and ``cnn``:
``build(in_shape (C, H, W), num_classes, **options) -> nn.Module`` mapping ``(N, C, H, W)`` to
``(N, num_classes)``. The parallel-attention models use ``num_classes`` as the width of each
branch's features (:mod:`.attention`).

The adapters import their library only when called (never at ``import stnkit`` nor on the default
path), and load pretrained weights through that library's own mechanism (torchvision's
``weights=``, timm's ``pretrained=True``); only the last classification layer is replaced.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..._validate import check_positive_int
from .network import BACKBONES


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv + BN, identity (or 1x1 strided projection) shortcut, ReLU.

    Shape:
        ``(N, in_channels, H, W) -> (N, channels, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False),
            nn.BatchNorm2d(channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride, bias=False), nn.BatchNorm2d(channels)
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


@BACKBONES.register(name="resnet")
def small_resnet(
    in_shape: Sequence[int], num_classes: int, width: int = 16, blocks: Sequence[int] = (1, 1, 1)
) -> nn.Sequential:
    """A small ResNet: 3x3 stem -> stages of basic blocks (widths ``width * 2**i``, stride 2 from the
    second stage) -> global average pool -> linear.

    Args:
        in_shape: ``(C, H, W)`` of one input sample (any size of at least 1x1).
        num_classes: Outputs of the last layer (classes, or branch features).
        width: Channels of the stem and the first stage.
        blocks: Basic blocks per stage.

    Returns:
        Module mapping ``(N, C, H, W)`` to ``(N, num_classes)``.
    """
    if len(in_shape) != 3:
        raise ValueError(f"in_shape: expected (C, H, W), got {tuple(in_shape)}")
    c = check_positive_int("in_shape", in_shape[0])
    for s in in_shape[1:]:
        check_positive_int("in_shape", s)
    width = check_positive_int("width", width)
    if not blocks:
        raise ValueError(f"blocks: expected at least one stage, got {tuple(blocks)}")
    layers: list[nn.Module] = [nn.Conv2d(c, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    channels = width
    for i, count in enumerate(blocks):
        out = width * 2**i
        for j in range(check_positive_int("blocks", count)):
            layers.append(BasicBlock(channels, out, stride=2 if (i > 0 and j == 0) else 1))
            channels = out
    layers += [
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),  # (N, channels)
        nn.Linear(channels, check_positive_int("num_classes", num_classes)),
    ]
    return nn.Sequential(*layers)


def _import(library: str, extra: str) -> Any:
    try:
        return importlib.import_module(library)
    except Exception as err:  # ImportError, or a build that does not load (torchvision::nms missing)
        raise ImportError(
            f"backbone: the {extra!r} backbones need {library}, which does not import here "
            f"({type(err).__name__}: {err}); install it for your torch "
            f"(pip install {library})"
        ) from err


def _replace_head(net: nn.Module, num_classes: int, arch: str) -> nn.Module:
    """Replaces the last classification layer (``fc``, ``classifier`` or ``head``) with a fresh
    ``nn.Linear(features, num_classes)``; Inception-v3's auxiliary head is dropped."""
    if getattr(net, "aux_logits", False):
        net.aux_logits, net.AuxLogits = False, None  # type: ignore[assignment]
    for attr in ("fc", "classifier", "head"):
        layer = getattr(net, attr, None)
        if isinstance(layer, nn.Sequential) and len(layer) and isinstance(layer[-1], nn.Linear):
            layer[-1] = nn.Linear(layer[-1].in_features, num_classes)
            return net
        if isinstance(layer, nn.Linear):
            setattr(net, attr, nn.Linear(layer.in_features, num_classes))
            return net
    raise ValueError(f"arch: cannot find the classification layer (fc, classifier or head) of {arch!r}")


@BACKBONES.register(name="torchvision")
def torchvision_backbone(
    in_shape: Sequence[int], num_classes: int, arch: str = "resnet50", weights: str | None = "DEFAULT"
) -> nn.Module:
    """A torchvision classification network (``torchvision.models.get_model``) with its last layer
    replaced by ``nn.Linear(features, num_classes)``.

    Args:
        in_shape: ``(C, H, W)``; torchvision's ImageNet networks take 3 channels.
        num_classes: Outputs of the new last layer.
        arch: torchvision model name, e.g. ``"resnet50"``, ``"inception_v3"``.
        weights: torchvision weights name (``"DEFAULT"``, ``"IMAGENET1K_V2"``, ...) downloaded and
            cached by torchvision itself; ``None`` for random initialisation.
    """
    if len(in_shape) != 3 or in_shape[0] != 3:
        raise ValueError(f"in_shape: torchvision backbones expect (3, H, W) images, got {tuple(in_shape)}")
    models = _import("torchvision", "torchvision").models
    net = models.get_model(arch, weights=weights)
    return _replace_head(net, check_positive_int("num_classes", num_classes), arch)


@BACKBONES.register(name="timm")
def timm_backbone(
    in_shape: Sequence[int], num_classes: int, arch: str = "resnet50", pretrained: bool = True
) -> nn.Module:
    """A timm network (``timm.create_model``; timm replaces the classifier and adapts the stem to
    ``C`` input channels itself).

    Args:
        in_shape: ``(C, H, W)``.
        num_classes: Outputs of the last layer.
        arch: timm model name, e.g. ``"inception_v3.tv_in1k"``, ``"resnet50"``.
        pretrained: Load timm's pretrained weights (downloaded and cached by timm).
    """
    if len(in_shape) != 3:
        raise ValueError(f"in_shape: expected (C, H, W), got {tuple(in_shape)}")
    timm = _import("timm", "timm")
    return timm.create_model(
        arch,
        pretrained=bool(pretrained),
        num_classes=check_positive_int("num_classes", num_classes),
        in_chans=check_positive_int("in_shape", in_shape[0]),
    )
