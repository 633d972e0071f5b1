"""The multi-digit recognition models of the paper's SVHN experiment (Table 2), registered by name.

* ``multidigit-cnn``: the baseline the paper takes from Goodfellow et al. (2014): eleven hidden
  layers, eight 5x5 conv layers (48, 64, 128, 160, 192, 192, 192, 192 filters; "same" padding; a 2x
  max-pool after conv 1, 3, 5 and 7) and then fully connected layers of 3,072 units.
  **Layer 11.** Goodfellow et al. describe eight conv, one locally connected and two fully connected
  hidden layers; transcriptions of the ST paper write two FC layers after the convs and a
  reimplementation uses three. We implement the **three fully connected layers** reading
  (``fc_layers=3``, conv 1-8 + FC 9-11); ``fc_layers=2`` gives the ten-layer transcription.
* ``st-cnn-single``: one affine ST at the input, localisation net conv 32 5x5 - max-pool - conv 32
  5x5 - fc 32 - fc 32, in front of the same network.
* ``st-cnn-multi``: an affine ST before each of the first four conv layers, each warping the map it
  sits on (the image for the first, a feature map for the others) with a localisation net of two
  fully connected layers of 32 units reading that same map.

Every model ends in ``positions`` (default 5) independent 11-way heads (digit 0-9, or 10 = "none")
and returns logits ``(N, positions, 11)``; with ``length_head=True`` one more row ``(N, positions + 1,
11)`` holds Goodfellow's length head in its first ``positions + 2`` entries (length 0..positions,
then "more"; see :mod:`stnkit.experiments.tasks.sequences`). ``width`` multiplies every filter and
unit count of the conv/FC stack (not the localisation nets), so the same architecture trains on a
CPU; the paper's widths are ``width=1``. Dropout (``dropout``, paper 0.5) acts on every layer but the
first conv and the localisation nets. Feature maps keep the normalised frame through the network
("same" convs, even sizes halved; approximately for odd sizes such as 54 -> 27 -> 13), so each series
ST's theta is in the same [-1, 1] frame as the input's (see :func:`stnkit.experiments.viz.series_regions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from ..._validate import check_choice, check_positive_int
from ...localisation import LocalisationNet, conv_localisation, fc_localisation
from ...module import SpatialTransformer
from .network import MODELS

#: Goodfellow et al.'s conv filters (layers 1-8).
CONV_CHANNELS = (48, 64, 128, 160, 192, 192, 192, 192)
#: Conv layers followed by a 2x max-pool (0-based).
POOLED = (0, 2, 4, 6)
#: How the last conv map reaches the FC layers (:func:`read_out`).
READOUTS = ("flatten", "column-max", "max", "avg")
#: Per-position classes: digits 0-9 and 10 = "none".
CLASSES = 11


def _scaled(n: int, width: float) -> int:
    return max(1, int(round(n * width)))


def read_out(x: Tensor, readout: str) -> Tensor:
    """The last conv map ``(N, C, h, w)`` -> the FC input: ``flatten`` ``(N, C*h*w)`` (paper),
    ``column-max`` (max over the rows: ``(N, C, w)``, vertical placement invariant), or ``max`` /
    ``avg`` (global pooling ``(N, C)``)."""
    if readout == "column-max":
        return x.amax(dim=2)
    if readout == "max":
        return x.amax(dim=(2, 3))
    if readout == "avg":
        return x.mean(dim=(2, 3))
    return x


def prior_logits(positions: int, floor: float = 1e-2) -> Tensor:
    """Log label frequencies ``(positions, 11)`` of each position for lengths uniform in ``1..positions``.

    Position ``k`` (0-based) holds a digit with probability ``(positions - k) / positions``, each of
    the ten equally likely, and "none" otherwise; probabilities are floored at ``floor`` (position 1
    is never "none") so that every logit is finite.
    """
    present = (positions - torch.arange(positions, dtype=torch.float32)) / positions  # (P,)
    probs = torch.cat([present[:, None].expand(-1, CLASSES - 1) / (CLASSES - 1), (1 - present)[:, None]], dim=1)
    return probs.clamp_min(floor).log()  # (P, 11)


class MultiDigitNet(nn.Module):
    """Eight conv layers -> FC layers -> ``positions`` 11-way heads, with STs in series (optional).

    Args:
        in_shape: ``(C, H, W)``, H and W at least 16 (four 2x pools): 64 or 128 (MNIST sequences), 54
            or 108 (SVHN crops).
        positions: Number of digit heads (paper: 5).
        width: Multiplier of every conv filter and FC unit count.
        fc_layers: Fully connected hidden layers of 3072 * width units (3: our reading of layer 11).
        dropout: Dropout probability (not after conv 1).
        length_head: Add Goodfellow's length head (an extra output row).
        batch_norm: Batch norm after each conv (not the paper's; the CPU recipe's, it trains faster).
        fc_batch_norm: Batch norm after each FC hidden layer too (not the paper's; the CPU recipe's).
        prior_bias: Start each head's biases at the log label frequencies of its position for
            lengths uniform in 1..positions (:func:`prior_logits`: the length prior from step 0).
        readout: ``flatten`` (paper) or a pooling of the last conv map (:func:`read_out`).
        transformers: ``{conv layer index: SpatialTransformer}`` applied to that layer's input.

    Shape:
        - input: ``(N, *in_shape)`` float.
        - output: ``(N, positions (+1), 11)`` logits.
    """

    #: The transformers sit one after another (``stnkit show`` maps their regions back, viz/series.py).
    transformers_in_series = True

    def __init__(
        self,
        in_shape: Sequence[int],
        positions: int = 5,
        width: float = 1.0,
        fc_layers: int = 3,
        dropout: float = 0.5,
        length_head: bool = False,
        batch_norm: bool = False,
        fc_batch_norm: bool = False,
        prior_bias: bool = False,
        readout: str = "flatten",
        transformers: dict[int, SpatialTransformer] | None = None,
    ) -> None:
        super().__init__()
        c, h, w = (check_positive_int("in_shape", s) for s in in_shape)
        if h < 16 or w < 16:
            raise ValueError(f"in_shape: expected H and W of at least 16 (four 2x pools), got {tuple(in_shape)}")
        if not 0 < width <= 16:
            raise ValueError(f"width: expected a multiplier in (0, 16], got {width!r}")
        self.in_shape = (c, h, w)
        self.positions = check_positive_int("positions", positions)
        self.length_head = bool(length_head)
        self.convs = nn.ModuleList()
        for i, out_c in enumerate(CONV_CHANNELS):
            out_c = _scaled(out_c, width)
            layers: list[nn.Module] = [nn.Conv2d(c, out_c, 5, padding=2)]
            layers += [nn.BatchNorm2d(out_c), nn.ReLU(inplace=True)] if batch_norm else [nn.ReLU(inplace=True)]
            if i in POOLED:
                layers.append(nn.MaxPool2d(2))
            if i > 0 and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.convs.append(nn.Sequential(*layers))
            c = out_c
        for _ in POOLED:
            h, w = h // 2, w // 2
        self.readout = check_choice("readout", readout, READOUTS)
        features = c * h * w if readout == "flatten" else c * w if readout == "column-max" else c
        fc: list[nn.Module] = [nn.Flatten()]  # (N, features)
        for _ in range(check_positive_int("fc_layers", fc_layers)):
            units = _scaled(3072, width)
            fc += [nn.Linear(features, units)] + ([nn.BatchNorm1d(units)] if fc_batch_norm else [])
            fc += [nn.ReLU(inplace=True)] + ([nn.Dropout(dropout)] if dropout > 0 else [])
            features = units
        self.fc = nn.Sequential(*fc)
        self.heads = nn.Linear(features, (self.positions + int(self.length_head)) * CLASSES)
        if prior_bias:
            with torch.no_grad():
                self.heads.bias.view(-1, CLASSES)[: self.positions] = prior_logits(self.positions)
        self.series = nn.ModuleDict({str(k): st for k, st in (transformers or {}).items()})

    @property
    def spatial_transformers(self) -> list[SpatialTransformer]:
        """The transformers in series order (the first sits on the input)."""
        return [cast(SpatialTransformer, self.series[k]) for k in sorted(self.series, key=int)]

    def forward(self, x: Tensor, return_thetas: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """Logits ``(N, rows, 11)``; with ``return_thetas`` also each ST's theta ``(N, 6)`` in order."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.in_shape:
            c, h, w = self.in_shape
            raise ValueError(f"x: this model expects images of shape (N, {c}, {h}, {w}), got shape {tuple(x.shape)}")
        thetas: list[Tensor] = []
        for i, conv in enumerate(self.convs):
            st = self.series[str(i)] if str(i) in self.series else None
            if st is not None:
                x, theta = st(x, return_theta=True)
                thetas.append(theta)
            x = conv(x)
        rows = self.positions + int(self.length_head)
        x = read_out(x, self.readout)  # (N, C, h, w) -> (N, features)
        logits = self.heads(self.fc(x)).view(x.shape[0], rows, CLASSES)  # (N, rows, 11)
        return (logits, thetas) if return_thetas else logits


#: The network options every multi-digit factory passes on to :class:`MultiDigitNet`.
NET_OPTIONS = (
    "positions",
    "width",
    "fc_layers",
    "dropout",
    "length_head",
    "batch_norm",
    "fc_batch_norm",
    "prior_bias",
    "readout",
)


def _network(in_shape, num_classes: int, transformers: dict, arguments: dict) -> MultiDigitNet:
    """The network with ``transformers``, taking the :data:`NET_OPTIONS` from a factory's ``arguments``."""
    if num_classes != CLASSES:
        raise ValueError(
            f"num_classes: multi-digit models have {CLASSES} classes per position (0-9, none), got {num_classes}"
        )
    return MultiDigitNet(in_shape, transformers=transformers, **{k: arguments[k] for k in NET_OPTIONS})


@MODELS.register(name="multidigit-cnn")
def multidigit_cnn(
    in_shape,
    num_classes=CLASSES,
    transform=None,
    downsample=False,
    transform_options=None,
    positions: int = 5,
    width: float = 1.0,
    fc_layers: int = 3,
    dropout: float = 0.5,
    length_head: bool = False,
    batch_norm: bool = False,
    fc_batch_norm: bool = False,
    prior_bias: bool = False,
    readout: str = "flatten",
) -> MultiDigitNet:
    """Goodfellow et al.'s multi-digit CNN (8 conv + 3 FC, five 11-way heads). Options: ``width``,
    ``positions``, ``fc_layers``, ``dropout``, ``length_head``, ``batch_norm``, ``fc_batch_norm``,
    ``prior_bias``, ``readout``."""
    return _network(in_shape, num_classes, {}, locals())


@MODELS.register(name="st-cnn-single")
def st_cnn_single(
    in_shape,
    num_classes=CLASSES,
    transform="affine",
    downsample=False,
    transform_options=None,
    positions: int = 5,
    width: float = 1.0,
    fc_layers: int = 3,
    dropout: float = 0.5,
    length_head: bool = False,
    batch_norm: bool = False,
    fc_batch_norm: bool = False,
    prior_bias: bool = False,
    readout: str = "flatten",
) -> MultiDigitNet:
    """An ST at the input (conv localisation) -> the multi-digit CNN. Options as ``multidigit-cnn``."""
    body = conv_localisation(in_shape, channels=(32, 32), kernel_size=5, hidden=32, downsample=1)
    loc = LocalisationNet(*body, nn.Linear(32, 32), nn.ReLU(inplace=True), out_features=32)
    st = SpatialTransformer(loc, transform, transform_options=transform_options)
    return _network(in_shape, num_classes, {0: st}, locals())


@MODELS.register(name="st-cnn-multi")
def st_cnn_multi(
    in_shape,
    num_classes=CLASSES,
    transform="affine",
    downsample=False,
    transform_options=None,
    positions: int = 5,
    width: float = 1.0,
    fc_layers: int = 3,
    dropout: float = 0.5,
    length_head: bool = False,
    batch_norm: bool = False,
    fc_batch_norm: bool = False,
    prior_bias: bool = False,
    readout: str = "flatten",
) -> MultiDigitNet:
    """An ST (FC 32-32 localisation) before each of conv 1-4 -> the multi-digit CNN (STs in series).

    Each ST warps the map it sits on (the image, then feature maps). Options as ``multidigit-cnn``."""
    c, h, w = in_shape
    shapes = [(c, h, w)]  # input of conv layer i (i = 0..3)
    for i in range(3):
        h, w = (h // 2, w // 2) if i in POOLED else (h, w)
        shapes.append((_scaled(CONV_CHANNELS[i], width), h, w))
    sts = {
        i: SpatialTransformer(fc_localisation(shape, hidden=(32, 32)), transform, transform_options=transform_options)
        for i, shape in enumerate(shapes)
    }
    return _network(in_shape, num_classes, sts, locals())
