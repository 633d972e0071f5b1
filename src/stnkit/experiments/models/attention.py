"""Parallel attention (the paper's CUB-200 models, ``2xST-CNN`` / ``4xST-CNN``) and its controls.

:class:`ParallelAttention`: one localisation net (reading the input, or a copy area-downsampled to
``loc_size``) predicts ``K`` attention boxes; all ``K`` crops are sampled at ``crop_size`` from the
**full-resolution, uncopied** input in one call (:func:`stnkit.warp_heads` through
``SpatialTransformer(heads=K)``); crop ``k`` goes to its own sub-network (a backbone of
:data:`~stnkit.experiments.models.network.BACKBONES`, weights not shared) whose ``features`` outputs
are concatenated, and a linear classifier reads them.

Head parametrisations (``scale``), all reading ``(s x + tx, s y + ty)`` for an output point
``(x, y)`` (a box of half-size ``s`` centred on ``(tx, ty)``, normalised units):

* ``"fixed"`` (the paper's CUB config): translation only, ``s = init_scale`` (default 0.5);
* ``"learned"``: ``s`` learned freely (the ``attention`` family);
* ``"bounded"``: ``s = lo + (hi - lo) * sigmoid(r)`` with ``(lo, hi) = scale_range``.

**Default boxes.** An identity start is no use for ``K`` crops (all would see the same thing). Head
``k`` starts at the centre of cell ``k`` (row-major) of the smallest near-square grid with at least
``K`` cells (``cols = ceil(sqrt(K))``, ``rows = ceil(K / cols)``), at scale ``init_scale``: ``K = 2``
starts on the left and right halves (centres ``(-0.5, 0)`` and ``(0.5, 0)``), ``K = 4`` on the four
quadrants (``(+-0.5, +-0.5)``), which at scale 0.5 tile the input exactly. The regression weights
start at zero, so every input starts at these boxes.

**Normalised localisation features** (``loc_norm="batch"``, the default). At initialisation the
localisation net's features hardly differ between inputs (on ``parts``: mean 0.013, standard
deviation 0.010 over canvases), so the regression learns one box for all inputs and the heads never
follow the glyphs. Batch-normalising the features (no affine) gives the regression weights the part
that varies: on ``parts`` the left head then moves to its digit and the test error drops from 61-67%
(boxes frozen) to 45-55% (docs/results.md, parallel attention).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..._validate import check_bool, check_choice, check_positive_int, check_size, check_tensor
from ...localisation import conv_localisation
from ...module import SpatialTransformer
from ...transforms import MatrixTransform, get
from .network import BACKBONES, MODELS

SCALES = ("fixed", "learned", "bounded")
#: Normalisations of the localisation features before the regression (``loc_norm``).
LOC_NORMS = ("none", "batch", "layer")
#: A buffer that only ``loc_norm="batch"`` models hold (runs from before 0.4.0 have none; train/build.py).
LOC_NORM_BUFFER = "st.localisation.2.running_mean"
#: Head counts of the registered parallel-attention models, and their names.
HEAD_COUNTS = (2, 4)
PARALLEL_ATTENTION = tuple(f"{k}xattn-cnn" for k in HEAD_COUNTS)


class FixedScaleAttention(MatrixTransform):
    """Translation at a fixed scale: ``theta = (tx, ty)`` reads ``(s x + tx, s y + ty)``."""

    name = "fixed-scale attention"
    num_params = 2

    def __init__(self, scale: float = 0.5) -> None:
        super().__init__()
        self.scale = _check_scale("init_scale", scale)

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.zeros(2, dtype=dtype, device=device)  # the centred box of half-size `scale`

    def _matrix(self, theta: Tensor) -> Tensor:
        tx, ty = theta.unbind(1)
        s, zero, one = torch.full_like(tx, self.scale), torch.zeros_like(tx), torch.ones_like(tx)
        return torch.stack([s, zero, tx, zero, s, ty, zero, zero, one], 1).view(-1, 3, 3)  # (N, 3, 3)

    def _params(self, matrix: Tensor) -> Tensor:
        return matrix[:, :2, 2]


class BoundedAttention(MatrixTransform):
    """Attention with a bounded scale: ``theta = (r, tx, ty)``, ``s = lo + (hi - lo) sigmoid(r)``."""

    name = "bounded attention"
    num_params = 3

    def __init__(self, scale_range: Sequence[float] = (0.1, 1.0)) -> None:
        super().__init__()
        if len(scale_range) != 2:
            raise ValueError(f"scale_range: expected (lo, hi), got {tuple(scale_range)}")
        lo, hi = (_check_scale("scale_range", float(v)) for v in scale_range)
        if not lo < hi:
            raise ValueError(f"scale_range: expected lo < hi, got {tuple(scale_range)}")
        self.lo, self.hi = lo, hi

    def raw(self, scale: float) -> float:
        """The ``r`` of scale ``scale`` (strictly inside the range)."""
        if not self.lo < scale < self.hi:
            raise ValueError(f"init_scale: expected a scale inside scale_range ({self.lo}, {self.hi}), got {scale}")
        p = (scale - self.lo) / (self.hi - self.lo)
        return math.log(p / (1 - p))

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.tensor([self.raw((self.lo + self.hi) / 2), 0.0, 0.0], dtype=dtype, device=device)

    def _matrix(self, theta: Tensor) -> Tensor:
        r, tx, ty = theta.unbind(1)
        s = self.lo + (self.hi - self.lo) * torch.sigmoid(r)
        zero, one = torch.zeros_like(s), torch.ones_like(s)
        return torch.stack([s, zero, tx, zero, s, ty, zero, zero, one], 1).view(-1, 3, 3)  # (N, 3, 3)

    def _params(self, matrix: Tensor) -> Tensor:
        p = ((matrix[:, 0, 0] - self.lo) / (self.hi - self.lo)).clamp(1e-6, 1 - 1e-6)
        return torch.stack([torch.logit(p), matrix[:, 0, 2], matrix[:, 1, 2]], 1)


class BatchFeatureNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` that normalises a training batch of one sample with its running statistics
    (a lone sample has no spread of its own; ``BatchNorm1d`` raises there). Shape: ``(N, F)``."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


def _check_scale(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}: expected a finite scale > 0, got {value!r}")
    return float(value)


def default_centres(k: int) -> Tensor:
    """``(K, 2)`` box centres ``(x, y)``: the cell centres of the smallest near-square grid, row-major."""
    k = check_positive_int("heads", k)
    cols = math.ceil(math.sqrt(k))
    rows = math.ceil(k / cols)

    def centre(i: int, n: int) -> float:  # centre of cell i of n along [-1, 1]
        return (2 * i + 1) / n - 1

    return torch.tensor([[centre(i % cols, cols), centre(i // cols, rows)] for i in range(k)])


class ParallelAttention(nn.Module):
    """``K`` attention crops of one input, each to its own sub-network; features concatenated.

    Args:
        in_shape: ``(C, H, W)`` of the input.
        num_classes: Number of classes.
        heads: ``K >= 1`` attention transformers (sharing one localisation net).
        crop_size: ``(H', W')`` of each crop (default: half the input, i.e. full resolution at scale 0.5).
        loc_size: ``(h, w)`` the localisation net reads (the input area-downsampled); default: ``crop_size``.
        scale: ``"fixed"``, ``"learned"`` or ``"bounded"`` (see the module docs).
        init_scale: Scale of the default boxes (and the fixed scale).
        scale_range: ``(lo, hi)`` of ``"bounded"`` heads.
        backbone: Sub-network of each crop, from ``BACKBONES`` (``resnet``, ``cnn``, ``torchvision``, ...).
        features: Output width of each sub-network (concatenated: ``K * features``).
        backbone_options: Options of the backbone (e.g. ``{"width": 16}``, ``{"arch": "resnet50"}``).
        freeze_boxes: Keep the heads at their default boxes (a control: two branches, no attention).
        read: ``"full"``: crops read the full-resolution input; ``"downsampled"``: they read the
            ``loc_size`` copy (a control).
        loc_options: Options of :func:`stnkit.conv_localisation` (default: no extra pooling, the
            paper's 5x5 kernels from 14 px up, 3x3 below).
        loc_norm: Normalises the localisation features before the regression: ``"batch"`` (the
            default; ``BatchNorm1d`` over the batch, no affine: each feature has zero mean and unit
            variance over the inputs, so the regression weights see how the inputs differ, not
            their common part), ``"layer"`` (``LayerNorm`` over each sample's features) or
            ``"none"`` (the paper's; the CUB configs keep it).

    Shape:
        - input: ``(N, *in_shape)``; output: logits ``(N, num_classes)``.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        *,
        heads: int = 2,
        crop_size: Sequence[int] | None = None,
        loc_size: Sequence[int] | None = None,
        scale: str = "fixed",
        init_scale: float = 0.5,
        scale_range: Sequence[float] = (0.1, 1.0),
        backbone: str = "resnet",
        features: int = 64,
        backbone_options: dict[str, Any] | None = None,
        freeze_boxes: bool = False,
        read: str = "full",
        loc_options: dict[str, Any] | None = None,
        loc_norm: str = "batch",
    ) -> None:
        super().__init__()
        self.loc_norm = check_choice("loc_norm", loc_norm, LOC_NORMS)
        if len(in_shape) != 3:
            raise ValueError(f"in_shape: expected (C, H, W), got {tuple(in_shape)}")
        self.in_shape = tuple(check_positive_int("in_shape", s) for s in in_shape)
        c, h, w = self.in_shape
        self.heads = check_positive_int("heads", heads)
        self.crop_size = check_size(
            "crop_size", crop_size if crop_size is not None else (max(1, h // 2), max(1, w // 2)), 2
        )
        self.loc_size = check_size("loc_size", loc_size if loc_size is not None else self.crop_size, 2)
        self.scale = check_choice("scale", scale, SCALES)
        self.read = check_choice("read", read, ("full", "downsampled"))
        self.freeze_boxes = check_bool("freeze_boxes", freeze_boxes)
        init_scale = _check_scale("init_scale", init_scale)
        family = {
            "fixed": lambda: FixedScaleAttention(init_scale),
            "learned": lambda: get("attention"),
            "bounded": lambda: BoundedAttention(scale_range),
        }[self.scale]()
        build = BACKBONES.get(backbone, argument="backbone")
        loc_options = {"kernel_size": 5 if min(self.loc_size) >= 14 else 3, "downsample": 1, **(loc_options or {})}
        loc_net = conv_localisation((c, *self.loc_size), **loc_options)
        norms: dict[str, Callable[[], nn.Module]] = {
            "none": nn.Identity,
            "batch": lambda: BatchFeatureNorm(loc_net.out_features, affine=False),
            "layer": lambda: nn.LayerNorm(loc_net.out_features, elementwise_affine=False),
        }
        norm = norms[self.loc_norm]()
        loc = nn.Sequential(nn.AdaptiveAvgPool2d(self.loc_size), loc_net, norm)  # area downsampling first
        self.st = SpatialTransformer(
            loc,
            family,
            loc_features=loc_net.out_features,
            output_size=self.crop_size,
            heads=self.heads,
            head_output="stack",
        )
        with torch.no_grad():
            regression = cast(nn.Linear, self.st.regression)  # regression is on (the default)
            regression.bias.copy_(self.default_boxes(cast(MatrixTransform, family), init_scale).flatten())
        if self.freeze_boxes:
            self.st.requires_grad_(False)
        check_positive_int("features", features)
        self.branches = nn.ModuleList(
            build((c, *self.crop_size), features, **(backbone_options or {})) for _ in range(self.heads)
        )
        self.classifier = nn.Sequential(
            nn.ReLU(), nn.Linear(self.heads * features, check_positive_int("num_classes", num_classes))
        )

    def default_boxes(self, family: MatrixTransform, init_scale: float) -> Tensor:
        """``(K, P)`` theta of the default boxes (see the module docs)."""
        centres = default_centres(self.heads)  # (K, 2)
        if isinstance(family, FixedScaleAttention):
            return centres
        s = init_scale if not isinstance(family, BoundedAttention) else family.raw(init_scale)
        return torch.cat([torch.full((self.heads, 1), float(s)), centres], 1)  # (K, 3)

    @property
    def spatial_transformers(self) -> list[SpatialTransformer]:
        """The one K-head attention transformer (for pictures and the localisation learning rate)."""
        return [self.st]

    def crops(self, x: Tensor) -> Tensor:
        """The ``K`` crops ``(N, K, C, H', W')``."""
        check_tensor("x", x, ndim=4, shape="(N, C, H, W)", floating=True)
        if tuple(x.shape[1:]) != self.in_shape:
            raise ValueError(
                f"x: this model expects images of shape (N, {', '.join(map(str, self.in_shape))}), "
                f"got shape {tuple(x.shape)}"
            )
        if self.read == "downsampled":
            x = cast(nn.Sequential, self.st.localisation)[0](x)  # (N, C, *loc_size)
        crops = self.st(x)  # (N, K, C, H', W'); one head gives (N, C, H', W')
        return crops.unsqueeze(1) if self.heads == 1 else crops

    def forward(self, x: Tensor) -> Tensor:
        crops = self.crops(x)  # (N, K, C, H', W')
        features = torch.cat([branch(crops[:, k]) for k, branch in enumerate(self.branches)], 1)  # (N, K*F)
        return self.classifier(features)

    def extra_repr(self) -> str:
        return (
            f"in_shape={self.in_shape}, heads={self.heads}, crop_size={self.crop_size}, "
            f"loc_size={self.loc_size}, scale={self.scale!r}, read={self.read!r}, "
            f"freeze_boxes={self.freeze_boxes}, loc_norm={self.loc_norm!r}"
        )


class Downsampled(nn.Module):
    """A backbone classifier on the input area-downsampled to ``size`` (``None``: full resolution)."""

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        *,
        size: Sequence[int] | None = None,
        backbone: str = "resnet",
        backbone_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(check_positive_int("in_shape", s) for s in in_shape)
        self.size = None if size is None else check_size("size", size, 2)
        self.pool = nn.AdaptiveAvgPool2d(self.size) if self.size else nn.Identity()
        shape = (self.in_shape[0], *(self.size or self.in_shape[1:]))
        self.classifier = BACKBONES.get(backbone, argument="backbone")(shape, num_classes, **(backbone_options or {}))
        self.spatial_transformers: list[SpatialTransformer] = []

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.pool(x))


def _parallel(k: int) -> Any:
    def factory(
        in_shape,
        num_classes,
        transform=None,
        downsample=False,
        transform_options=None,
        *,
        crop_size=None,
        loc_size=None,
        scale="fixed",
        init_scale=0.5,
        scale_range=(0.1, 1.0),
        backbone="resnet",
        features=64,
        backbone_options=None,
        freeze_boxes=False,
        read="full",
        loc_options=None,
        loc_norm="batch",
    ) -> ParallelAttention:
        return ParallelAttention(
            in_shape,
            num_classes,
            heads=k,
            crop_size=crop_size,
            loc_size=loc_size,
            scale=scale,
            init_scale=init_scale,
            scale_range=scale_range,
            backbone=backbone,
            features=features,
            backbone_options=backbone_options,
            freeze_boxes=freeze_boxes,
            read=read,
            loc_options=loc_options,
            loc_norm=loc_norm,
        )

    factory.__doc__ = (
        f"{k} parallel attention crops (one loc net) -> {k} sub-networks -> concat -> linear "
        f"(the paper's {k}xST-CNN; see ParallelAttention)."
    )
    factory.name = f"{k}xattn-cnn"  # type: ignore[attr-defined]  # 2xst-cnn is the MNIST-addition model
    return factory


for _k in HEAD_COUNTS:
    MODELS.register(_parallel(_k))  # PARALLEL_ATTENTION


@MODELS.register(name="down-cnn")
def down_cnn(
    in_shape,
    num_classes,
    transform=None,
    downsample=False,
    transform_options=None,
    *,
    crop_size=None,
    backbone="resnet",
    backbone_options=None,
) -> Downsampled:
    """A backbone on the input area-downsampled to ``crop_size`` (default: half; the input's own size:
    full resolution)."""
    size = crop_size if crop_size is not None else (max(1, in_shape[1] // 2), max(1, in_shape[2] // 2))
    return Downsampled(in_shape, num_classes, size=size, backbone=backbone, backbone_options=backbone_options)
