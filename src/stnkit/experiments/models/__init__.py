"""Model registry: the paper's FCN, CNN, ST-FCN, ST-CNN and 2xST models, and parallel attention.

Example:
    >>> import torch
    >>> from stnkit.experiments.models import create_model, list_models
    >>> list_models()  # doctest: +NORMALIZE_WHITESPACE
    ['2xattn-cnn', '2xst-cnn', '2xst-fcn', '4xattn-cnn', 'cnn', 'coloc-st', 'down-cnn', 'fcn', 'flat-cnn',
     'ic-st-cnn', 'multidigit-cnn', 'reg-unet', 'st-cnn', 'st-cnn-multi', 'st-cnn-single', 'st-fcn', 'st3d-cnn']
    >>> model = create_model("st-cnn", in_shape=(1, 42, 42), num_classes=10, downsample=True)
    >>> model(torch.rand(2, 1, 42, 42)).shape
    torch.Size([2, 10])
    >>> len(model.spatial_transformers)
    1
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..._validate import check_positive_int
from ...transforms import list_transforms
from . import attention, backbones, coloc, icstn, multidigit, registration, volumes, zoo  # noqa: F401  (register

# the models: the paper's, parallel attention + controls, coloc-st, ic-st-cnn, multi-digit, reg-unet, flat-cnn and
# st3d-cnn (volumes); backbones)
from .network import BACKBONES, MODELS, TransformerClassifier, conv_classifier, fc_classifier

_REGISTRY = MODELS


def register_model(obj: Any = None, *, name: str | None = None) -> Any:
    """Registers a model factory ``f(in_shape, num_classes, transform, downsample, transform_options,
    **options) -> nn.Module`` under its ``name`` attribute or ``__name__`` (or ``name``)."""
    return MODELS.register(obj, name=name)


def list_backbones() -> list[str]:
    """Names of the registered backbones (``cnn``, ``fcn``, ``resnet``, ``timm``, ``torchvision``)."""
    return BACKBONES.names()


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return _REGISTRY.names()


def describe_model(name: str) -> str:
    """One-line description of model ``name`` (the first line of its factory's docstring)."""
    doc = inspect.getdoc(_REGISTRY.get(name)) or ""
    return doc.splitlines()[0] if doc else ""


def create_model(
    name: str,
    *,
    in_shape: Sequence[int],
    num_classes: int,
    transform: str = "affine",
    downsample: bool = False,
    transform_options: dict[str, Any] | None = None,
    **options: Any,
) -> TransformerClassifier:
    """Builds model ``name`` with freshly initialised weights (torch's default init, identity STs).

    Args:
        name: One of :func:`list_models`.
        in_shape: ``(C, H, W)`` of one input image; ``(C, D, H, W)`` of one volume for the models of
            volumes (``flat-cnn``, ``st3d-cnn``: their factory's ``input_dims`` is 3).
        num_classes: Number of classes (10 for digits, 19 for MNIST addition).
        transform: Transform family of the spatial transformers (see
            :func:`stnkit.transforms.list_transforms`); ignored by ``fcn`` and ``cnn``.
        downsample: 2x average pool after the transformers (paper: RTS and TC).
        transform_options: Options for the family, e.g. ``{"grid_size": 4}`` for ``tps``.
        **options: Model options: ``hidden`` (FCN models: units of the two hidden layers,
            default ``(128, 128)``), ``channels`` (CNN models: filters of the two conv layers,
            default ``(32, 64)``), ``steps`` (``ic-st-cnn``: composed updates, default 4).

    Returns:
        A :class:`TransformerClassifier` with ``in_shape`` and ``spatial_transformers``.

    Shape:
        - input: ``(N, *in_shape)`` float in [0, 1].
        - output: logits ``(N, num_classes)``.
    """
    factory = _REGISTRY.get(name)
    of_volumes = getattr(factory, "input_dims", 2) == 3
    if not isinstance(in_shape, (tuple, list, torch.Size)) or len(in_shape) != (4 if of_volumes else 3):
        raise ValueError(
            f"in_shape: expected {'(C, D, H, W)' if of_volumes else '(C, H, W)'} for model {name!r}, got {in_shape!r}"
        )
    in_shape = tuple(check_positive_int("in_shape", s) for s in in_shape)
    check_positive_int("num_classes", num_classes, minimum=2)
    if transform not in list_transforms():
        raise ValueError(f"transform: expected one of {', '.join(list_transforms())}; got {transform!r}")
    accepted = [
        p
        for p in inspect.signature(factory).parameters
        if p not in ("in_shape", "num_classes", "transform", "downsample", "transform_options", "options")
    ]
    if name.startswith(("st-", "2xst-")) and factory.__module__ == zoo.__name__:
        accepted = ["hidden"] if name.endswith("fcn") else ["channels"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"options: model {name!r} accepts {', '.join(accepted) or 'no options'}; got {', '.join(unknown)}"
        )
    return factory(
        in_shape,
        num_classes,
        transform=transform,
        downsample=bool(downsample),
        transform_options=transform_options,
        **options,
    )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def localisation_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Parameters of the model's spatial transformers (localisation nets and regression layers)."""
    return [p for st in getattr(model, "spatial_transformers", []) for p in st.parameters()]


__all__ = [
    "TransformerClassifier",
    "conv_classifier",
    "count_parameters",
    "create_model",
    "describe_model",
    "fc_classifier",
    "list_backbones",
    "list_models",
    "localisation_parameters",
    "register_model",
]
