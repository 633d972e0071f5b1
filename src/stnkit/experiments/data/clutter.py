"""Distortions on a larger canvas that use other digits: T, TC (translated, cluttered) and MNIST
addition. Registered by the package ``__init__`` importing this module (it imports
:mod:`.distortions`, never the reverse)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..._validate import check_positive_int
from ._geometry import similarity_theta
from .distortions import (
    SOURCE_SIZE,
    Distortion,
    Params,
    RotatedTranslatedScaled,
    _warp,
    check_range,
    register_distortion,
)


@register_distortion
class Translated(Distortion):
    """T: the whole ``28 x 28`` digit frame at a uniformly random whole-pixel position on a
    ``size x size`` canvas (whole pixels so the digit is copied without blur; the frame always
    fits, so the digit is never cut).

    Params: ``offset_x (N,)``, ``offset_y (N,)`` pixels from the canvas centre to the digit's
    centre (x right, y down), integers when ``size`` is even.
    """

    name = "t"

    def __init__(self, size: int = 60) -> None:
        check_positive_int("size", size, minimum=SOURCE_SIZE[0])
        self.size = (size, size)

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        free = self.size[0] - SOURCE_SIZE[0]  # pixels of free room along each axis
        corner = torch.randint(free + 1, (n, 2), generator=generator).float()  # top-left pixel of the frame
        offset = corner - free / 2  # (N, 2)
        return {"offset_x": offset[:, 0], "offset_y": offset[:, 1]}

    def _place(self, images: Tensor, params: Params) -> Tensor:
        zero = torch.zeros_like(params["offset_x"])
        theta = similarity_theta(zero, zero + 1, params["offset_x"], params["offset_y"], self.size)
        return _warp(images, theta, "affine", self.size, mode="nearest")  # whole pixels: an exact copy

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        return self._place(images, params)


@register_distortion
class TranslatedCluttered(Translated):
    """TC: the digit as in :class:`Translated` on a ``size x size`` canvas, plus ``patches``
    clutter patches of ``patch_size x patch_size`` pixels cropped from other digits.

    Where the paper is silent: each patch is cropped at a uniformly random whole-pixel position
    inside the central ``crop_box x crop_box`` region of its digit (where MNIST ink is, so that
    patches are rarely blank) and pasted at a uniformly random whole-pixel position fully inside
    the canvas; patches may overlap the digit and each other, and overlaps keep the brighter pixel
    (maximum). The other digits come from ``others`` in :meth:`apply`; without them, patch ``k``
    of sample ``i`` is cropped from sample ``i - k - 1`` of the batch (cyclically).

    Params: ``offset_x, offset_y (N,)`` as in ``t``; ``crop_x, crop_y (N, patches)`` top-left
    pixel of each crop in its 28x28 digit; ``patch_x, patch_y (N, patches)`` top-left pixel of
    each patch on the canvas.
    """

    name = "tc"

    def __init__(self, size: int = 60, patches: int = 6, patch_size: int = 6, crop_box: int = 20) -> None:
        super().__init__(size)
        self.num_others = check_positive_int("patches", patches, minimum=0)
        self.patch_size = check_positive_int("patch_size", patch_size)
        if not isinstance(crop_box, int) or not patch_size <= crop_box <= SOURCE_SIZE[0] or patch_size > size:
            raise ValueError(
                f"crop_box: expected an int with patch_size ({patch_size}) <= crop_box <= 28 and "
                f"patch_size <= size ({size}), got crop_box={crop_box!r}"
            )
        self.crop_box = crop_box

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        params = super()._make_params(n, generator)
        k, p = self.num_others, self.patch_size
        low = (SOURCE_SIZE[0] - self.crop_box) // 2
        crop = low + torch.randint(self.crop_box - p + 1, (n, k, 2), generator=generator)  # (N, K, 2)
        patch = torch.randint(self.size[0] - p + 1, (n, k, 2), generator=generator)  # (N, K, 2)
        return {
            **params,
            "crop_x": crop[..., 0],
            "crop_y": crop[..., 1],
            "patch_x": patch[..., 0],
            "patch_y": patch[..., 1],
        }

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        canvas = self._place(images, params)  # (N, 1, H, W)
        n, k, p = images.shape[0], self.num_others, self.patch_size
        if n == 0 or k == 0:
            return canvas
        if others is None:
            others = torch.stack([images[:, 0].roll(j + 1, dims=0) for j in range(k)], dim=1)  # (N, K, 28, 28)
        elif others.dtype == torch.uint8:
            others = others.float() / 255.0
        others = others.to(device=canvas.device, dtype=canvas.dtype)
        step = torch.arange(p, device=images.device)
        rows = (params["crop_y"].unsqueeze(-1) + step).unsqueeze(-1)  # (N, K, p, 1)
        cols = (params["crop_x"].unsqueeze(-1) + step).unsqueeze(-2)  # (N, K, 1, p)
        batch = torch.arange(n, device=images.device).view(n, 1, 1, 1)
        which = torch.arange(k, device=images.device).view(1, k, 1, 1)
        patches = others[batch, which, rows, cols]  # (N, K, p, p)
        width = self.size[1]
        target = (params["patch_y"].unsqueeze(-1) + step).unsqueeze(-1) * width + (
            params["patch_x"].unsqueeze(-1) + step
        ).unsqueeze(-2)  # (N, K, p, p) flat canvas index
        flat = canvas.reshape(n, -1)  # (N, H*W)
        flat = flat.scatter_reduce(1, target.reshape(n, -1), patches.reshape(n, -1), "amax")
        return flat.view_as(canvas)  # (N, 1, H, W)


@register_distortion
class Addition(Distortion):
    """MNIST addition: two digits in two channels of a ``size x size`` canvas, each with its own
    independent RTS distortion (:class:`~stnkit.experiments.data.distortions.RotatedTranslatedScaled`, same
    options); the label is the sum of the two labels (19 classes, 0-18).

    The second digit comes from ``others (N, 1, 28, 28)`` (required); :meth:`draw_others` picks
    it through a random permutation of the pool, so every digit is a second digit once per pass.

    Params: ``angle, scale, offset_x, offset_y``, each ``(N, 2)`` (column = channel), as in RTS.
    """

    name = "addition"
    channels = 2
    num_classes = 19
    num_others = 1

    def __init__(
        self,
        angle: tuple[float, float] = (-45.0, 45.0),
        scale: tuple[float, float] = (0.7, 1.2),
        size: int = 42,
        digit_box: float = 20.0,
    ) -> None:
        check_range("angle", angle, low=-180.0, high=180.0)
        self.rts = RotatedTranslatedScaled(angle=angle, scale=scale, size=size, digit_box=digit_box)
        self.size = self.rts.size

    def _make_params(self, n: int, generator: torch.Generator) -> Params:
        flat = self.rts._make_params(2 * n, generator)  # sample i: rows 2i (first digit), 2i + 1 (second)
        return {key: value.view(n, 2) for key, value in flat.items()}  # each (N, 2)

    def _apply(self, images: Tensor, params: Params, others: Tensor | None) -> Tensor:
        if others is None:
            raise ValueError(
                "others: addition needs the second digit of each sample, shape (N, 1, 28, 28); "
                "draw its index with draw_others"
            )
        n = images.shape[0]
        second = others.float() / 255.0 if others.dtype == torch.uint8 else others.float()
        second = second.to(images.device)
        pair = torch.cat([images, second], dim=1).reshape(2 * n, 1, *SOURCE_SIZE)  # (2N, 1, 28, 28)
        flat = {key: value.reshape(2 * n) for key, value in params.items()}  # each (2N,)
        out = self.rts._apply(pair, flat, None)  # (2N, 1, H, W)
        return out.view(n, 2, *self.size)  # (N, 2, H, W)

    def draw_others(self, n: int, pool_size: int, generator: torch.Generator) -> Tensor:
        """The second digit of each sample: consecutive random permutations of the pool, ``(n, 1)``."""
        if n == 0:
            return torch.zeros(0, 1, dtype=torch.long)
        rounds = math.ceil(n / pool_size)
        order = torch.cat([torch.randperm(pool_size, generator=generator) for _ in range(rounds)])
        return order[:n].unsqueeze(1)

    def labels(self, labels: Tensor, other_labels: Tensor) -> Tensor:
        return labels + other_labels[:, 0]
