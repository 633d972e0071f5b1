"""Pairs of MNIST digits of the same class, for unsupervised registration (the ``registration`` task).

Each sample is a *moving* digit and a *fixed* digit of the same class (a different image when the
class has more than one). Training pairs: every image of the split is a moving digit once per
epoch; its fixed partner and the epoch's order are drawn from ``(seed, epoch)`` by an explicit
generator, so a sample's draw is a function of ``(seed, epoch, index)``. Test pairs are fixed: the
partners are drawn once from a constant seed, whatever the run's seed.

Example:
    >>> import torch
    >>> from stnkit.experiments.data import Digits
    >>> digits = Digits(torch.arange(6, dtype=torch.uint8).view(6, 1, 1).expand(6, 28, 28).clone(),
    ...                 torch.tensor([0, 1, 0, 1, 0, 1]), "toy")
    >>> moving, fixed, labels = next(DigitPairs(digits, train=False).batches(0, 6))
    >>> moving.shape, bool((moving != fixed).any(1).flatten(1).all(1).all())  # a different image each
    (torch.Size([6, 1, 28, 28]), True)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import cast

import torch
from torch import Tensor

from ..._validate import check_positive_int
from .datasets import check_rank_split, derive_seed
from .sources import Digits

#: Seed of the fixed test pairs (independent of the run's seed).
TEST_SEED = 13


def same_class_partners(labels: Tensor, generator: torch.Generator) -> Tensor:
    """For each sample a random OTHER sample of its class (itself only when it is alone): ``(n,)``.

    Args:
        labels: ``(n,)`` int64 classes.
        generator: The only source of randomness.
    """
    n = len(labels)
    order = torch.sort(labels, stable=True).indices  # (n,) samples grouped by class
    sorted_labels = labels[order]
    classes, counts = torch.unique_consecutive(sorted_labels, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts  # (classes,) first slot of each class in `order`
    group = torch.searchsorted(classes, sorted_labels)  # (n,) class index of each slot
    slot_in_class = torch.arange(n) - starts[group]  # (n,)
    size = counts[group]  # (n,)
    skip = (torch.rand(n, generator=generator, dtype=torch.float64) * (size - 1)).long()  # in [0, size - 2]
    partner_slot = starts[group] + (slot_in_class + 1 + skip) % size  # never the slot itself if size > 1
    partners = torch.empty(n, dtype=torch.long)
    partners[order] = order[partner_slot]
    return partners


class DigitPairs:
    """Moving/fixed pairs of same-class digits, served in batches (see the module docs).

    Args:
        digits: The source images (:class:`~stnkit.experiments.data.Digits`).
        train: Fresh partners and order every epoch (``True``) or the fixed test pairs, in order.
        seed: Seeds the training epochs (ignored for test pairs).
        limit: Keep the first ``limit`` images.

    ``batches`` yields ``moving (n, 1, 28, 28)``, ``fixed (n, 1, 28, 28)`` float32 in [0, 1] and
    ``labels (n,)`` int64.
    """

    def __init__(self, digits: Digits, *, train: bool = True, seed: int = 0, limit: int | None = None) -> None:
        if limit is not None:
            check_positive_int("limit", limit)
        self.images = digits.images[:limit]  # (n, 28, 28) uint8
        self.labels = digits.labels[:limit]  # (n,)
        self.source, self.train = digits.source, bool(train)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self._fixed = (
            None
            if self.train
            else same_class_partners(
                self.labels, torch.Generator().manual_seed(derive_seed("registration-test", TEST_SEED))
            )
        )

    def __len__(self) -> int:
        return len(self.labels)

    def plan(self, epoch: int) -> tuple[Tensor, Tensor]:
        """``(order, partners)`` of ``epoch``, both ``(n,)``: the moving images' order and each
        image's fixed partner."""
        if not self.train:
            return torch.arange(len(self)), cast(Tensor, self._fixed)  # set when not training
        generator = torch.Generator().manual_seed(derive_seed("registration-train", self.seed, epoch))
        partners = same_class_partners(self.labels, generator)
        return torch.randperm(len(self), generator=generator), partners

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """This rank's part of each global batch of ``epoch`` (split as ``DistortedDigits.batches``)."""
        check_rank_split(batch_size, rank, world_size)
        order, partners = self.plan(epoch)
        for start in range(0, len(self), batch_size):
            index = order[torch.tensor_split(torch.arange(start, min(start + batch_size, len(self))), world_size)[rank]]
            moving = self.images[index].unsqueeze(1).float().div(255)  # (b, 1, 28, 28)
            fixed = self.images[partners[index]].unsqueeze(1).float().div(255)  # (b, 1, 28, 28)
            yield moving, fixed, self.labels[index]
