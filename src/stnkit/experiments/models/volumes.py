"""Models of volumes ``(N, C, D, H, W)`` flattened along depth for a 2-D classifier (the paper's 3-D
experiment, task ``mnist3d``).

* ``flat-cnn`` (the baseline): the volume's mean along depth, ``(N, C, H, W)``, read by the paper's
  2-D CNN (``BACKBONES.get("cnn")``).
* ``st3d-cnn``: a 3-D spatial transformer (the paper's conv localisation net in 3-D,
  :func:`stnkit.conv_localisation`, on a copy average-pooled to 16-31 voxels a side
  (:func:`localisation_pool`), regression initialised to the identity) warps the volume to a volume
  of the same size, whose mean along depth the same 2-D CNN reads. A new ``st3d-cnn`` therefore
  sees exactly what ``flat-cnn`` sees.

The flattening is the **mean** over depth: it keeps intensities in [0, 1] whatever the depth (a sum
would grow with it) and passes a smooth gradient to every voxel (a max would pass it to one).
``downsample`` puts a 2x average pool after the flattening, as for the 2-D models.

Example:
    >>> import torch
    >>> model = st3d_cnn((1, 16, 16, 16), 10, channels=(4, 8))
    >>> x = torch.rand(2, 1, 16, 16, 16)
    >>> model(x).shape, bool(torch.allclose(model.transform(x), x.mean(2), atol=1e-6))
    (torch.Size([2, 10]), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..._validate import check_tensor
from ...localisation import conv_localisation
from ...module import SpatialTransformer
from ...transforms import get, list_transforms
from .network import BACKBONES, MODELS, TransformerClassifier

#: The 3-D families (the only ones ``st3d-cnn`` takes).
VOLUME_FAMILIES = tuple(name for name in list_transforms() if get(name).ndim == 3)


def flatten_depth(volume: Tensor) -> Tensor:
    """The mean along depth: ``(N, C, D, H, W)`` -> ``(N, C, H, W)``."""
    return volume.mean(2)  # (N, C, H, W)


class VolumeClassifier(TransformerClassifier):
    """3-D spatial transformers (optional) -> mean along depth -> 2x pool (optional) -> 2-D classifier.

    Args:
        classifier: Maps ``(N, C', H, W)`` (pooled) to logits.
        in_shape: ``(C, D, H, W)`` the model expects.
        spatial_transformers: 3-D transformers applied in parallel to the volume; outputs concatenated
            along channels before the flattening.
        downsample: 2x average pool after the flattening.

    Shape:
        - input: ``(N, *in_shape)`` float.
        - output: logits ``(N, num_classes)``.
    """

    def transform(self, x: Tensor) -> Tensor:
        """What the classifier reads before the pool: the (warped) volume's mean along depth ``(N, C', H, W)``."""
        self._check_input(x)
        if self.transformers:
            x = torch.cat([st(x) for st in self.transformers], dim=1)  # (N, sum of C_i, D, H, W)
        return flatten_depth(x)  # (N, C', H, W)

    def _check_input(self, x: Tensor) -> None:
        check_tensor("x", x, ndim=5, shape="(N, C, D, H, W)", floating=True)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"x: this model expects volumes of shape (N, {', '.join(map(str, self.in_shape))}), "
                f"got shape {tuple(x.shape)}"
            )


def localisation_pool(depth: int) -> int:
    """Average-pool factor in front of the 3-D localisation net: ``depth // 16`` (at least 1), so it
    reads a volume of 16-31 voxels a side (60 -> 3, 32 -> 2, 24 -> 1): its cost and its parameters
    (mostly the last linear layer's) stay those of a 16-20 voxel volume whatever the input's size."""
    return max(1, int(depth) // 16)


def _image_shape(in_shape: Sequence[int], downsample: bool) -> tuple[int, int, int]:
    """``(C, H, W)`` the 2-D classifier reads: the flattened volume, halved when downsampling."""
    c, _, h, w = in_shape
    return (c, h // 2, w // 2) if downsample else (c, h, w)


@MODELS.register(name="flat-cnn")
def flat_cnn(
    in_shape: Sequence[int],
    num_classes: int,
    transform: str | None = None,
    downsample: bool = False,
    transform_options: dict[str, Any] | None = None,
    channels: Sequence[int] = (32, 64),
) -> VolumeClassifier:
    """the volume's mean along depth -> CNN (baseline of st3d-cnn). Option: ``channels``.

    Args:
        in_shape: ``(C, D, H, W)``.
        num_classes: Number of classes.
        transform, transform_options: Ignored (no transformer).
        downsample: 2x average pool after the flattening.
        channels: Filters of the CNN's two conv layers.
    """
    classifier = BACKBONES.get("cnn")(_image_shape(in_shape, downsample), num_classes, channels)
    return VolumeClassifier(classifier, in_shape, downsample=downsample)


@MODELS.register(name="st3d-cnn")
def st3d_cnn(
    in_shape: Sequence[int],
    num_classes: int,
    transform: str = "affine3d",
    downsample: bool = False,
    transform_options: dict[str, Any] | None = None,
    channels: Sequence[int] = (32, 64),
) -> VolumeClassifier:
    """a 3-D ST (3-D conv localisation) -> mean along depth -> CNN. Option: ``channels``.

    Args:
        in_shape: ``(C, D, H, W)``.
        num_classes: Number of classes.
        transform: A 3-D family (:data:`VOLUME_FAMILIES`; ``affine3d`` is the paper's).
        downsample: 2x average pool after the flattening.
        transform_options: Options for the family, e.g. ``{"grid_size": 4}`` for ``bspline3d``.
        channels: Filters of the CNN's two conv layers.

    Raises:
        ValueError: ``transform`` is not a 3-D family.
    """
    if transform not in VOLUME_FAMILIES:
        raise ValueError(
            f"transform: st3d-cnn warps volumes; expected a 3-D family "
            f"({', '.join(VOLUME_FAMILIES)}), got {transform!r}"
        )
    localisation = conv_localisation(tuple(in_shape), downsample=localisation_pool(in_shape[1]))
    st = SpatialTransformer(localisation, transform, transform_options=transform_options)
    classifier = BACKBONES.get("cnn")(_image_shape(in_shape, downsample), num_classes, channels)
    return VolumeClassifier(classifier, in_shape, [st], downsample=downsample)


flat_cnn.input_dims = 3  # volumes: in_shape (C, D, H, W)
st3d_cnn.input_dims = 3
st3d_cnn.families = VOLUME_FAMILIES  # the only families it takes
