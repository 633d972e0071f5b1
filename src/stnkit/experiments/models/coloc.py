"""The co-localisation model (the paper's appendix): an attention spatial transformer that crops a
digit-sized window out of an 84x84 image, and a frozen encoder, the Table 1 digit CNN, that embeds
the crop.

* Localisation net (appendix): conv 8 9x9 stride 4 -> max-pool 2 -> fc 8 -> fc 8 -> fc 3 (the
  transformer's regression layer), attention transform ``(s, tx, ty)``.
* The window is bounded (:class:`BoundedAttention`): it stays inside the image, at a scale between
  0.75 and 1.2 times a crop-sized window (option ``scale``), and follows a curriculum: it starts as
  the whole image (so every crop holds its digit) and shrinks linearly to those bounds over the
  first ``shrink_steps`` (300) training steps. Without the curriculum every run of the paper's loss
  moved all windows into an empty region (docs/results.md, co-localisation).
* Encoder ``e``: the ``cnn`` backbone on ``crop x crop`` crops; the embedding concatenates its
  hidden layers (both pooled conv stages, flattened) and its pre-softmax layer, as the appendix
  says. Its weights are frozen (``requires_grad=False``) and must be pretrained on MNIST: the
  co-localisation tasks do that in :meth:`~stnkit.experiments.tasks.coloc.Colocalisation.prepare_model`
  (or load them from a ``cnn`` run with the model option ``encoder``); the buffer
  ``encoder_ready`` records it, so a checkpoint carries the pretrained encoder.

Example:
    >>> import torch
    >>> model = co_localiser((1, 84, 84), 10, channels=(4, 8))
    >>> model(torch.rand(2, 1, 84, 84)).shape  # embeddings: 4*14*14 + 8*4*4 + 10
    torch.Size([2, 922])
    >>> model.boxes(torch.rand(2, 1, 84, 84))[0].round().tolist()  # at the start: the whole image
    [0.0, 0.0, 84.0, 84.0]
    >>> model.st.steps_done.fill_(300)  # after the shrink: the centred window of ~28x28 (scale 0.325)
    tensor(300)
    >>> model.boxes(torch.rand(2, 1, 84, 84))[0].round().tolist()
    [28.0, 28.0, 56.0, 56.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validate import check_choice, check_positive_int, check_tensor
from ...localisation import LocalisationNet
from ...module import SpatialTransformer
from .network import BACKBONES, MODELS

#: Default bounds of the window's scale, in crop-sized windows, and steps of the shrink from the
#: whole image to them (docs/results.md, co-localisation: 98-100% hits on classes 1, 3, 7).
SCALE, SHRINK_STEPS = (0.75, 1.2), 300
#: What the embedding may hold (:meth:`CoLocaliser.embed`).
EMBEDDINGS = ("layers", "logits")


def coloc_localisation(in_shape: Sequence[int], channels: int = 8, hidden: int = 8) -> LocalisationNet:
    """The appendix's co-localisation localisation net: conv ``channels`` 9x9 stride 4 -> max-pool 2
    -> ReLU -> fc ``hidden`` -> ReLU -> fc ``hidden`` -> ReLU (the regression to 3 follows)."""
    c, h, w = (check_positive_int("in_shape", s) for s in in_shape)
    h, w = ((h - 9) // 4 + 1) // 2, ((w - 9) // 4 + 1) // 2  # after the conv and the pool
    if h < 1 or w < 1:
        raise ValueError(
            f"in_shape: expected an image of at least 17x17 for the 9x9 stride-4 conv and the pool, "
            f"got {tuple(in_shape)}"
        )
    return LocalisationNet(
        nn.Conv2d(c, channels, 9, stride=4),
        nn.MaxPool2d(2),
        nn.ReLU(inplace=True),
        nn.Flatten(),
        nn.Linear(channels * h * w, hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, hidden),
        nn.ReLU(inplace=True),
        out_features=hidden,
    )


class BoundedAttention(SpatialTransformer):
    """An attention transformer whose window stays inside the image, at a bounded scale that can
    shrink over training (a curriculum).

    The regression layer's raw output ``(a, b, c)`` becomes ``s = s_min + (s_max - s_min)
    sigmoid(a)``, ``tx = (1 - s) tanh(b)``, ``ty = (1 - s) tanh(c)``: the window ``[tx - s, tx +
    s] x [ty - s, ty + s]`` never leaves ``[-1, 1]^2``. A zero raw output (the initialisation) is
    the centred window of scale ``(s_min + s_max) / 2``. Without the bound the triplet loss is
    smallest with every crop off the image (all black, so every anchor equals every positive):
    measured on class 3, 0.63 there against 0.18 on the true boxes (L2-normalised embeddings).

    With ``shrink_steps > 0`` the bounds start at ``(start, start)`` (``start = 1``: the whole
    image, so every crop holds its digit) and move linearly to ``scale`` over the first
    ``shrink_steps`` training steps (:meth:`advance`, called once per step by the task); the
    buffer ``steps_done`` counts them, so a checkpoint resumes the schedule where it was.

    Args:
        localisation: The localisation net (see :class:`stnkit.SpatialTransformer`).
        scale: ``(s_min, s_max)`` with ``0 < s_min <= s_max <= 1``, the bounds after the shrink.
        start: The scale both bounds start at, in ``[s_max, 1]`` (used when ``shrink_steps > 0``).
        shrink_steps: Training steps from ``start`` to ``scale`` (0: ``scale`` from the start).
        **options: As :class:`stnkit.SpatialTransformer` (the transform is ``attention``).
    """

    steps_done: Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        localisation: nn.Module,
        scale: tuple[float, float],
        *,
        start: float = 1.0,
        shrink_steps: int = 0,
        **options: Any,
    ) -> None:
        super().__init__(localisation, "attention", **options)
        low, high = (float(v) for v in scale)
        if not 0 < low <= high <= 1:
            raise ValueError(f"scale: expected (s_min, s_max) with 0 < s_min <= s_max <= 1, got {scale!r}")
        if not high <= float(start) <= 1:
            raise ValueError(f"start: expected a scale in [s_max, 1] = [{high:g}, 1], got {start!r}")
        self.scale, self.start = (low, high), float(start)
        self.shrink_steps = check_positive_int("shrink_steps", shrink_steps, minimum=0)
        self.register_buffer("steps_done", torch.tensor(0, dtype=torch.long))
        with torch.no_grad():
            cast(nn.Linear, self.regression).bias.zero_()  # regression is on (the default)

    def bounds(self) -> tuple[float, float]:
        """``(s_min, s_max)`` now: ``scale`` once ``shrink_steps`` steps are done."""
        low, high = self._bounds(torch.float64)
        return float(low), float(high)

    def advance(self) -> None:
        """Counts one training step (moves the bounds along the shrink)."""
        self.steps_done += 1

    def predict(self, x: Tensor) -> Tensor:
        """``(N, 3)`` bounded ``(s, tx, ty)``."""
        raw = super().predict(x)  # (N, 3)
        low, high = self._bounds(raw.dtype)
        s = low + (high - low) * torch.sigmoid(raw[:, :1])  # (N, 1)
        return torch.cat([s, (1 - s) * torch.tanh(raw[:, 1:])], dim=1)

    def _bounds(self, dtype: torch.dtype) -> tuple[Tensor | float, Tensor | float]:
        # tensors from the step counter (no int(): torch.export traces it), floats without a shrink
        low, high = self.scale
        if self.shrink_steps == 0:
            return low, high
        done = (self.steps_done.to(dtype) / self.shrink_steps).clamp(max=1.0)  # () fraction of the shrink
        return self.start + (low - self.start) * done, self.start + (high - self.start) * done

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        # runs saved before the schedule existed had no shrink: their count starts past its end
        state_dict.setdefault(prefix + "steps_done", torch.tensor(self.shrink_steps, dtype=torch.long))
        super()._load_from_state_dict(state_dict, prefix, *args)


class CoLocaliser(nn.Module):
    """Attention ST -> crop -> frozen digit CNN -> embedding.

    Args:
        in_shape: ``(C, H, W)`` of the images (``(1, 84, 84)`` in the paper).
        num_classes: Classes of the encoder's classification layer (10 digits).
        crop: Side of the crop the transformer samples and the encoder reads (28).
        channels: The encoder CNN's filters.
        scale: Bounds of the window's scale after the shrink, in crop-sized windows (``(0.75,
            1.2)``: 21 to 34 pixels of 84 for a 28-pixel crop).
        shrink_steps: Training steps over which the window shrinks from the whole image to
            ``scale`` (see :class:`BoundedAttention`; 0: no curriculum).
        embedding: What the embedding holds (see :meth:`embed`): ``"layers"`` (the appendix's
            hidden layers and logits) or ``"logits"`` (the logits alone).

    Shape:
        - input: ``(N, C, H, W)``.
        - output: embeddings ``(N, D)``.
    """

    encoder_ready: Tensor  # a buffer, registered in __init__

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int = 10,
        crop: int = 28,
        channels: Sequence[int] = (32, 64),
        scale: Sequence[float] = SCALE,
        shrink_steps: int = SHRINK_STEPS,
        embedding: str = "layers",
    ) -> None:
        super().__init__()
        self.embedding = check_choice("embedding", embedding, EMBEDDINGS)
        self.in_shape = tuple(int(s) for s in in_shape)
        self.crop = check_positive_int("crop", crop)
        if len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
            raise ValueError(f"scale: expected (low, high) with 0 < low <= high, in crop-sized windows, got {scale!r}")
        fit = crop / max(self.in_shape[1:])  # the scale of a crop-sized window
        bounds = (min(float(scale[0]) * fit, 1.0), min(float(scale[1]) * fit, 1.0))
        self.st = BoundedAttention(
            coloc_localisation(self.in_shape), bounds, shrink_steps=shrink_steps, output_size=(crop, crop)
        )
        self.encoder = BACKBONES.get("cnn")((self.in_shape[0], crop, crop), num_classes, channels)
        self.encoder.requires_grad_(False)
        self.register_buffer("encoder_ready", torch.tensor(False))

    @property
    def spatial_transformers(self) -> list[SpatialTransformer]:
        return [self.st]

    def embed(self, crops: Tensor) -> Tensor:
        """``(N, D)``: the encoder's hidden layers (pooled conv stages) and logits (``embedding``
        ``"layers"``) or its logits alone (``"logits"``), concatenated and L2-normalised (squared
        distances in [0, 4], on the scale of the margin 1)."""
        parts, h = [], crops
        for layer in self.encoder:
            h = layer(h)
            if isinstance(layer, (nn.MaxPool2d, nn.Linear)) and self.embedding == "layers":
                parts.append(h.flatten(1))  # (N, features of this stage)
        if self.embedding == "logits":
            parts.append(h)  # (N, classes)
        return F.normalize(torch.cat(parts, dim=1), dim=1)

    def theta(self, x: Tensor) -> Tensor:
        """``(N, 3)`` the attention parameters read off ``x``."""
        self._check_input(x)
        return self.st.predict(x)

    def boxes(self, x: Tensor) -> Tensor:
        """``(N, 4)`` the predicted ``(x0, y0, x1, y1)`` pixel box of each image."""
        return attention_boxes(self.theta(x), self.in_shape[1:])

    def forward(self, x: Tensor) -> Tensor:
        self._check_input(x)
        return self.embed(self.st(x))  # (N, D)

    def _check_input(self, x: Tensor) -> None:
        check_tensor("x", x, ndim=4, shape="(N, C, H, W)", floating=True)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"x: this model expects images of shape (N, {', '.join(map(str, self.in_shape))}), "
                f"got shape {tuple(x.shape)}"
            )


def attention_boxes(theta: Tensor, size: Sequence[int]) -> Tensor:
    """The input window an attention transform ``theta = (s, tx, ty)`` reads, as pixel boxes.

    The output square ``[-1, 1]^2`` maps to ``[tx - |s|, tx + |s|] x [ty - |s|, ty + |s|]`` in
    normalised input coordinates; with ``align_corners=False`` normalised ``u`` is pixel
    ``(u + 1) W / 2`` (pixel ``i`` covers ``[i, i + 1]``).

    Args:
        theta: ``(N, 3)`` attention parameters.
        size: ``(H, W)`` of the input.

    Returns:
        ``(N, 4)`` boxes ``(x0, y0, x1, y1)`` in input pixels.
    """
    check_tensor("theta", theta, ndim=2, shape="(N, 3)", floating=True)
    h, w = size
    s, tx, ty = theta[:, 0].abs(), theta[:, 1], theta[:, 2]
    return torch.stack(
        [(tx - s + 1) * w / 2, (ty - s + 1) * h / 2, (tx + s + 1) * w / 2, (ty + s + 1) * h / 2], dim=1
    )  # (N, 4)


def load_encoder(model: CoLocaliser, path: str | Path) -> None:
    """Loads the encoder from a ``cnn`` run's ``checkpoint.pt`` (or its directory) trained on 28x28
    digits (e.g. ``stnkit train --task none --model cnn``) and marks it ready."""
    path = Path(path)
    path = path / "checkpoint.pt" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"encoder: expected a cnn run directory or checkpoint.pt, got {str(path)!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    weights = {k.removeprefix("classifier."): v for k, v in state["model"].items() if k.startswith("classifier.")}
    try:
        model.encoder.load_state_dict(weights)
    except RuntimeError as err:
        raise ValueError(
            f"encoder: {str(path)!r} does not hold a cnn of this shape "
            f"({(model.in_shape[0], model.crop, model.crop)} inputs): {err}"
        ) from None
    model.encoder_ready.fill_(True)


@MODELS.register(name="coloc-st")
def co_localiser(
    in_shape,
    num_classes,
    transform="attention",
    downsample=False,
    transform_options=None,
    channels: Sequence[int] = (32, 64),
    crop: int = 28,
    encoder: str | None = None,
    scale: Sequence[float] = SCALE,
    shrink_steps: int = SHRINK_STEPS,
    embedding: str = "layers",
) -> CoLocaliser:
    """Attention ST (co-localisation) -> frozen digit CNN encoder. Options: ``channels``, ``crop``,
    ``encoder``, ``scale``, ``shrink_steps``, ``embedding`` (see :class:`CoLocaliser`)."""
    if transform != "attention":
        raise ValueError(
            f"transform: the co-localisation model's transformer is the paper's attention (s, tx, ty); "
            f"expected 'attention', got {transform!r}"
        )
    model = CoLocaliser(in_shape, num_classes, crop, channels, scale, shrink_steps, embedding)
    if encoder is not None:
        load_encoder(model, encoder)
    return model


co_localiser.families = ("attention",)  # the only family it takes
