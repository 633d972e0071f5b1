"""``ic-st-cnn``: ST-CNN with an inverse compositional transformer (IC-STN, Lin & Lucey, CVPR 2017).

The same localisation net and classifier as ``st-cnn``; the one transformer is a
:class:`stnkit.IterativeSpatialTransformer` that applies the localisation net ``steps`` times, each
time to the ORIGINAL input warped by the composition so far, and warps the input once by the final
composition. Matrix families only (the updates compose through the family's ``compose``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...iterative import IterativeSpatialTransformer
from ...localisation import conv_localisation
from .network import BACKBONES, MODELS, TransformerClassifier
from .zoo import _pooled

#: IC-STN's number of recurrent warps on MNIST (Lin & Lucey 2017 use 4).
DEFAULT_STEPS = 4


@MODELS.register(name="ic-st-cnn")
def ic_st_cnn(
    in_shape: Sequence[int],
    num_classes: int,
    transform: str = "affine",
    downsample: bool = False,
    transform_options: dict[str, Any] | None = None,
    steps: int = DEFAULT_STEPS,
    channels: Sequence[int] = (32, 64),
) -> TransformerClassifier:
    """an IC-STN (conv localisation applied K = steps times, warps composed) -> CNN. Options: steps, channels.

    Args:
        in_shape: ``(C, H, W)`` of one input image.
        num_classes: Number of classes.
        transform: A matrix family (``affine``, ``similarity``, ``projective``, ...).
        downsample: 2x average pool after the transformer (paper: RTS and TC).
        transform_options: Options for the family.
        steps: ``K``, the number of composed updates (default 4, IC-STN's; 1 is ``st-cnn``).
        channels: Filters of the classifier's two conv layers.

    Returns:
        A :class:`TransformerClassifier` whose one spatial transformer is an
        :class:`stnkit.IterativeSpatialTransformer`.

    Raises:
        ValueError: ``transform`` is not a matrix family (``tps`` has no ``compose``).
    """
    st = IterativeSpatialTransformer(
        conv_localisation(in_shape), transform, steps=steps, transform_options=transform_options
    )  # refuses non-matrix families
    head = _pooled(in_shape, downsample)
    return TransformerClassifier(BACKBONES.get("cnn")(head, num_classes, channels), in_shape, [st], downsample)
