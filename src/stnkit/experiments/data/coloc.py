"""The co-localisation images of the paper (appendix): one 28x28 MNIST digit at a random position of
an 84x84 black canvas, optionally with sixteen 6x6 clutter patches cropped from training digits;
``per_class`` images of each chosen class. The true boxes (the digit's 28x28 frame) are returned
for scoring only.

Every draw comes from explicit generators: the images are drawn once from ``(seed, "images")``
(the paper scores a run on the very images it trains on); each epoch's order and the random
negative crops of the triplet loss from ``(seed, epoch)``, so a sample's draw is a function of
``(seed, epoch, index)`` whatever the batch size or the number of ranks.

Example:
    >>> import torch
    >>> from stnkit.experiments.data import Digits
    >>> digits = Digits(torch.full((30, 28, 28), 255, dtype=torch.uint8), torch.arange(30) % 3, "ones")
    >>> data = ColocImages(classes=(1, 2), per_class=4, digits=digits, clutter_digits=digits)
    >>> x, boxes, labels, negatives = next(data.batches(0, 8))
    >>> tuple(x.shape), tuple(boxes.shape), sorted(labels.tolist()), tuple(negatives.shape)
    ((8, 1, 84, 84), (8, 4), [1, 1, 1, 1, 2, 2, 2, 2], (8, 3))
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..._validate import check_positive_int
from .datasets import derive_seed
from .sources import Digits, load_digits

#: Canvas side, digit side, clutter patches and their side (the paper's appendix).
CANVAS, DIGIT, PATCHES, PATCH = 84, 28, 16, 6
#: Clutter patches are cropped inside the central CROP_BOX x CROP_BOX of a digit (where its ink is).
CROP_BOX = 20


class ColocImages:
    """``per_class`` co-localisation images of each class in ``classes``, served in batches.

    Args:
        classes: Digit classes (a run of the paper uses one).
        per_class: Images per class (paper: 100); fewer when the source has fewer.
        clutter: Add ``PATCHES`` clutter patches (the paper's cluttered setting).
        name, data_dir, download: The source digits (see :func:`load_digits`): the digits placed
            come from the ``test`` split, the clutter from the ``train`` split.
        seed: Seeds the images (once) and each epoch's order and negative crops.
        limit: Keep the first ``limit`` images.
        digits, clutter_digits: Already loaded :class:`Digits` instead of ``name``'s splits.

    ``batches`` yields ``x (n, 1, 84, 84)`` in [0, 1], ``boxes (n, 4)`` the true ``(x0, y0, x1,
    y1)`` pixel box, ``labels (n,)`` int64 and ``negatives (n, 3)``: the attention theta ``(s, tx,
    ty)`` of a random ``28 x 28`` crop of each image (the triplet loss's negative).
    """

    def __init__(
        self,
        classes: Sequence[int] = tuple(range(10)),
        per_class: int = 100,
        clutter: bool = False,
        *,
        name: str = "mnist",
        data_dir: str | os.PathLike | None = None,
        download: bool = False,
        seed: int = 0,
        limit: int | None = None,
        digits: Digits | None = None,
        clutter_digits: Digits | None = None,
    ) -> None:
        classes = list(classes) if isinstance(classes, (list, tuple)) else classes
        if (
            not isinstance(classes, list)
            or not classes
            or any(not isinstance(c, int) or isinstance(c, bool) or not 0 <= c <= 9 for c in classes)
        ):
            raise ValueError(f"classes: expected a non-empty list of digit classes 0-9, got {classes!r}")
        if len(set(classes)) != len(classes):
            raise ValueError(f"classes: expected distinct classes, got {classes!r}")
        self.classes = classes
        self.per_class = check_positive_int("per_class", per_class)
        self.clutter = bool(clutter)
        self.seed = check_positive_int("seed", seed, minimum=0)
        if limit is not None:
            check_positive_int("limit", limit)
        digits = digits if digits is not None else load_digits(name, "test", data_dir=data_dir, download=download)
        if self.clutter and clutter_digits is None:
            clutter_digits = load_digits(name, "train", data_dir=data_dir, download=download)
        self.source = digits.source
        generator = torch.Generator().manual_seed(derive_seed("coloc-images", self.seed))
        chosen = [torch.nonzero(digits.labels == c).flatten()[:per_class] for c in classes]
        index = torch.cat(chosen)[:limit]  # (n,) digits placed, class by class
        self.labels = digits.labels[index].clone()  # (n,)
        self.images, self.boxes = _compose(digits.images[index], clutter_digits if self.clutter else None, generator)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def size(self) -> tuple[int, int]:
        return (CANVAS, CANVAS)

    def negatives(self, epoch: int) -> Tensor:
        """``(n, 3)`` attention theta of each image's random crop in ``epoch`` (image order)."""
        generator = torch.Generator().manual_seed(derive_seed("coloc-negatives", self.seed, epoch))
        return random_crops(len(self), generator)

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1, shuffle: bool = True
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        """This rank's part of each global batch of ``epoch`` (see ``DistortedDigits.batches``):
        shuffled by ``(seed, epoch)`` unless ``shuffle`` is false (evaluation: in order)."""
        check_positive_int("batch_size", batch_size)
        check_positive_int("world_size", world_size)
        if not isinstance(rank, int) or not 0 <= rank < world_size or batch_size % world_size:
            raise ValueError(
                f"rank, batch_size: expected 0 <= rank < world_size ({world_size}) and a batch_size "
                f"multiple of it, got rank={rank!r}, batch_size={batch_size}"
            )
        n = len(self)
        generator = torch.Generator().manual_seed(derive_seed("coloc-order", self.seed, epoch))
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        negatives = self.negatives(epoch)
        for start in range(0, n, batch_size):
            index = order[torch.tensor_split(torch.arange(start, min(start + batch_size, n)), world_size)[rank]]
            yield self.images[index], self.boxes[index], self.labels[index], negatives[index]


class ColocEval:
    """The images a co-localisation run is scored on: its training images, in order."""

    def __init__(self, data: ColocImages) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor, Tensor, Tensor]]:
        return self.data.batches(0, batch_size, rank, world_size, shuffle=False)


def random_crops(n: int, generator: torch.Generator, size: int = CANVAS, crop: int = DIGIT) -> Tensor:
    """``(n, 3)`` attention theta ``(s, tx, ty)`` of ``crop x crop`` windows at uniformly random
    positions fully inside a ``size x size`` image."""
    scale = crop / size
    centre = (torch.rand(n, 2, generator=generator) * 2 - 1) * (1 - scale)  # (n, 2) in [-(1-s), 1-s]
    return torch.cat([torch.full((n, 1), scale), centre], dim=1)


def _compose(digits: Tensor, clutter: Digits | None, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Places ``digits (n, 28, 28)`` uint8 on canvases; returns ``(n, 1, 84, 84)`` float and ``(n, 4)`` boxes."""
    n = digits.shape[0]
    free = CANVAS - DIGIT
    corner = torch.randint(free + 1, (n, 2), generator=generator)  # (n, 2) top-left (x, y)
    canvas = torch.zeros(n, CANVAS, CANVAS, dtype=torch.uint8)
    if clutter is not None:
        source = torch.randint(len(clutter.images), (n, PATCHES), generator=generator)
        crop = torch.randint(
            (DIGIT - CROP_BOX) // 2, (DIGIT + CROP_BOX) // 2 - PATCH + 1, (n, PATCHES, 2), generator=generator
        )
        place = torch.randint(CANVAS - PATCH + 1, (n, PATCHES, 2), generator=generator)
    for i in range(n):
        x, y = (int(v) for v in corner[i])
        canvas[i, y : y + DIGIT, x : x + DIGIT] = digits[i]
        if clutter is not None:
            for k in range(PATCHES):
                cx, cy = (int(v) for v in crop[i, k])
                px, py = (int(v) for v in place[i, k])
                patch = clutter.images[source[i, k], cy : cy + PATCH, cx : cx + PATCH]
                region = canvas[i, py : py + PATCH, px : px + PATCH]
                canvas[i, py : py + PATCH, px : px + PATCH] = torch.maximum(region, patch)
    boxes = torch.cat([corner, corner + DIGIT], dim=1).float()  # (n, 4) (x0, y0, x1, y1)
    return canvas.unsqueeze(1).float() / 255, boxes
