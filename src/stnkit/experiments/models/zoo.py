"""The paper's models (appendix of Jaderberg et al. 2015), registered by name.

Every factory takes ``(in_shape, num_classes, transform, downsample, transform_options)`` plus its
own documented options and returns a :class:`TransformerClassifier`:

* ``fcn``: FCN classifier (two hidden layers + classification layer).
* ``cnn``: CNN classifier (conv 9x9 -> pool -> conv 7x7 -> pool -> classification layer).
* ``st-fcn`` / ``st-cnn``: one spatial transformer on the input, with the paper's FC / conv
  localisation net, outputting the input's size, in front of the FCN / CNN classifier.
* ``2xst-fcn`` / ``2xst-cnn``: two parallel spatial transformers (MNIST addition), each with its own
  localisation net seeing every input channel; their outputs are concatenated (2 x C channels).

``downsample=True`` puts the paper's 2x average pool in front of the classifier (after the
transformers): RTS (42x42) and TC (60x60). ``stnkit train`` turns it on for the models with
transformers only: the plain FCN/CNN see the whole 42x42 / 60x60 input, the paper's most likely reading
(``--downsample`` pools them too: the same classifier on the same input as the ST models').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...localisation import conv_localisation, fc_localisation
from ...module import SpatialTransformer
from .network import BACKBONES, MODELS, TransformerClassifier

Factory = Callable[..., TransformerClassifier]


def _pooled(in_shape: Sequence[int], downsample: bool, channels: int | None = None) -> tuple[int, int, int]:
    """Shape the classifier sees: ``(channels or C, H // 2, W // 2)`` when downsampling."""
    c, h, w = in_shape
    c = c if channels is None else channels
    return (c, h // 2, w // 2) if downsample else (c, h, w)


def _transformers(
    count: int, localisation: str, in_shape: Sequence[int], transform: str, transform_options: dict[str, Any] | None
) -> list[SpatialTransformer]:
    build = fc_localisation if localisation == "fc" else conv_localisation
    return [SpatialTransformer(build(in_shape), transform, transform_options=transform_options) for _ in range(count)]


@MODELS.register
def fcn(
    in_shape, num_classes, transform=None, downsample=False, transform_options=None, hidden: Sequence[int] = (128, 128)
) -> TransformerClassifier:
    """FCN: 2 hidden fully connected layers + classification layer. Option: ``hidden``."""
    return TransformerClassifier(
        BACKBONES.get("fcn")(_pooled(in_shape, downsample), num_classes, hidden), in_shape, downsample=downsample
    )


@MODELS.register
def cnn(
    in_shape, num_classes, transform=None, downsample=False, transform_options=None, channels: Sequence[int] = (32, 64)
) -> TransformerClassifier:
    """CNN: conv 9x9 -> max-pool -> conv 7x7 -> max-pool -> classification layer. Option: ``channels``."""
    return TransformerClassifier(
        BACKBONES.get("cnn")(_pooled(in_shape, downsample), num_classes, channels), in_shape, downsample=downsample
    )


def _st_model(count: int, localisation: str, classifier: str) -> Factory:
    def factory(
        in_shape, num_classes, transform="affine", downsample=False, transform_options=None, **options: Any
    ) -> TransformerClassifier:
        sts = _transformers(count, localisation, in_shape, transform, transform_options)
        head = _pooled(in_shape, downsample, channels=count * in_shape[0])
        build = BACKBONES.get(classifier)
        return TransformerClassifier(build(head, num_classes, **options), in_shape, sts, downsample)

    loc = "FC localisation" if localisation == "fc" else "conv localisation"
    what = "an ST" if count == 1 else f"{count} parallel STs (outputs concatenated)"
    factory.__doc__ = f"{what} ({loc}) -> {classifier.upper()}. Option: " + (
        "``hidden``." if classifier == "fcn" else "``channels``."
    )
    factory.name = ("st-" if count == 1 else f"{count}xst-") + classifier  # type: ignore[attr-defined]
    return factory


for _count, _loc, _classifier in ((1, "fc", "fcn"), (1, "conv", "cnn"), (2, "fc", "fcn"), (2, "conv", "cnn")):
    MODELS.register(_st_model(_count, _loc, _classifier))  # st-fcn, st-cnn, 2xst-fcn, 2xst-cnn
