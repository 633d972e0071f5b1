"""Distorted digit data sets: a split of MNIST / Fashion-MNIST seen through a distortion.

Training split: every epoch draws a fresh order and fresh distortions from a generator seeded by
``(seed, epoch)``; sample ``j`` of an epoch's order gets the ``j``-th draw, so the data of an
epoch does not depend on the batch size or the number of ranks. Test split: one fixed draw from
a generator seeded by ``test_seed`` (not by ``seed``), made once and cached, in file order.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterator

import torch
from torch import Tensor

from ..._validate import check_choice, check_positive_int
from .distortions import Distortion, Params, get_distortion, index_params, list_distortions
from .sources import SPLITS, Digits, load_digits

logger = logging.getLogger(__name__)

#: Seed of the fixed test-set distortions (the paper's year); independent of the training seed.
TEST_SEED = 2015
_TEST_CHUNK = 2048


def list_datasets() -> list[str]:
    """Data-set names accepted by ``DistortedDigits``: the distortions (the digit tasks of ``stnkit train --task``)."""
    return list_distortions()


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts (stable across runs and platforms)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**63 - 1)


class DistortedDigits:
    """One split of a digit data set under a distortion, served in (rank-split) batches.

    Args:
        distortion: A name from :func:`list_datasets` or a :class:`Distortion` instance.
        split: ``"train"`` or ``"test"``.
        name: ``"mnist"`` or ``"fashion-mnist"``.
        data_dir, download: See :func:`stnkit.experiments.data.load_digits`.
        seed: Training seed (the training split's order and draws depend on it and the epoch).
        limit: Keep only the first ``limit`` samples of the split (quick runs).
        test_seed: Seed of the test split's fixed draw.
        digits: Already loaded :class:`Digits` to use instead of loading ``name``.

    Example:
        >>> from stnkit.experiments.data import Digits, DistortedDigits
        >>> import torch
        >>> digits = Digits(torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), "zeros")
        >>> data = DistortedDigits("rts", "train", digits=digits)
        >>> [tuple(x.shape) for x, y in data.batches(epoch=0, batch_size=4)]
        [(4, 1, 42, 42), (4, 1, 42, 42), (2, 1, 42, 42)]
    """

    def __init__(
        self,
        distortion: str | Distortion,
        split: str = "train",
        name: str = "mnist",
        data_dir: str | os.PathLike | None = None,
        download: bool = False,
        seed: int = 0,
        limit: int | None = None,
        *,
        test_seed: int = TEST_SEED,
        digits: Digits | None = None,
    ) -> None:
        if isinstance(distortion, str):
            distortion = get_distortion(distortion)
        elif not isinstance(distortion, Distortion):
            raise TypeError(
                f"distortion: expected a name ({', '.join(list_datasets())}) or a Distortion, "
                f"got {type(distortion).__name__}"
            )
        check_choice("split", split, SPLITS)
        self.seed = _check_int("seed", seed)
        self.test_seed = _check_int("test_seed", test_seed)
        if limit is not None:
            check_positive_int("limit", limit)
        if digits is None:
            digits = load_digits(name, split, data_dir=data_dir, download=download)
        elif not isinstance(digits, Digits):
            raise TypeError(f"digits: expected a stnkit.experiments.data.Digits, got {type(digits).__name__}")
        if limit is not None and limit < len(digits):
            digits = Digits(digits.images[:limit], digits.labels[:limit], digits.source, digits.embedded)
        self.distortion = distortion
        self.split = split
        self.digits = digits
        self._test: tuple[Tensor, Tensor] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """Output ``(H, W)``."""
        return self.distortion.size

    @property
    def channels(self) -> int:
        """Output channels."""
        return self.distortion.channels

    @property
    def num_classes(self) -> int:
        """Number of classes of the labels served."""
        return self.distortion.num_classes

    def __len__(self) -> int:
        return len(self.digits)

    def __repr__(self) -> str:
        return (
            f"DistortedDigits({self.distortion.name!r}, {self.split!r}, n={len(self)}, source={self.digits.source!r})"
        )

    def num_batches(self, batch_size: int, drop_last: bool = False) -> int:
        """How many batches :meth:`batches` yields per epoch."""
        check_positive_int("batch_size", batch_size)
        full, rest = divmod(len(self), batch_size)
        return full + (1 if rest and not drop_last else 0)

    # -- drawing ---------------------------------------------------------------------------------
    def _plan(self, generator: torch.Generator, shuffle: bool) -> tuple[Tensor, Params, Tensor]:
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        params = self.distortion.make_params(n, generator)
        others = self.distortion.draw_others(n, n, generator)  # (n, num_others)
        return order, params, others

    def _make(self, order: Tensor, params: Params, others: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        index = order[positions]
        images, labels = self.digits.images, self.digits.labels
        other = others[positions]  # (n, num_others)
        other_images = images[other] if self.distortion.num_others else None  # (n, num_others, 28, 28)
        x = self.distortion.apply(images[index], index_params(params, positions), other_images)
        y = self.distortion.labels(labels[index], labels[other])
        return x, y

    def _test_tensors(self) -> tuple[Tensor, Tensor]:
        if self._test is None:
            generator = torch.Generator().manual_seed(derive_seed("test", self.distortion.name, self.test_seed))
            plan = self._plan(generator, shuffle=False)
            parts = [
                self._make(*plan, torch.arange(s, min(s + _TEST_CHUNK, len(self))))
                for s in range(0, len(self), _TEST_CHUNK)
            ]
            if parts:
                self._test = (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
            else:
                self._test = (torch.zeros(0, self.channels, *self.size), torch.zeros(0, dtype=torch.long))
        return self._test

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1, drop_last: bool = False
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yields this rank's part of each global batch of an epoch.

        The samples of the epoch are cut into global batches of ``batch_size``; each global batch
        is cut into ``world_size`` contiguous chunks and rank ``r`` gets chunk ``r``, so
        concatenating the ranks' chunks gives the single-process batch. ``batch_size`` must be a
        multiple of ``world_size``; a last, smaller batch is split as evenly as possible (the first
        chunks get one sample more, a chunk may be empty) unless ``drop_last``.

        Args:
            epoch: Epoch number (training split: seeds the order and the draws; ignored for test).
            batch_size: Global batch size (all ranks together).
            rank: This process's rank, ``0 <= rank < world_size``.
            world_size: Number of processes.
            drop_last: Skip a last batch smaller than ``batch_size``.

        Yields:
            ``x`` float32 ``(n, C, H, W)`` in [0, 1] and ``y`` int64 ``(n,)``.
        """
        _check_int("epoch", epoch)
        check_rank_split(batch_size, rank, world_size)
        if self.split == "train":
            generator = torch.Generator().manual_seed(derive_seed("train", self.seed, epoch))
            plan = self._plan(generator, shuffle=True)
        else:
            test_x, test_y = self._test_tensors()
        for start in range(0, len(self), batch_size):
            stop = min(start + batch_size, len(self))
            if drop_last and stop - start < batch_size:
                break
            positions = torch.tensor_split(torch.arange(start, stop), world_size)[rank]
            if self.split == "train":
                yield self._make(*plan, positions)
            else:
                yield test_x[positions], test_y[positions]


def check_rank_split(batch_size: int, rank: int, world_size: int) -> None:
    """Checks a rank's place and the global batch it shares: ``0 <= rank < world_size`` and
    ``batch_size`` a multiple of ``world_size`` (every rank an equal share of each global batch).

    Raises:
        ValueError: naming the argument.
    """
    check_positive_int("batch_size", batch_size)
    check_positive_int("world_size", world_size)
    if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world_size:
        raise ValueError(f"rank: expected an int in [0, {world_size - 1}] (world_size={world_size}), got {rank!r}")
    if batch_size % world_size:
        raise ValueError(
            f"batch_size: expected a multiple of world_size={world_size} so every rank gets an "
            f"equal share of each global batch, got {batch_size}"
        )


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {value!r}")
    return value
