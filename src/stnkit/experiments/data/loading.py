"""Data loading for file-based data sets, through :mod:`torch.utils.data`.

The digit tasks draw whole batches of distortions at once from images already in memory
(:class:`~stnkit.experiments.data.DistortedDigits`: the fast path, no ``DataLoader``). Data sets read
from files (SVHN, CUB) go through a :class:`~torch.utils.data.DataLoader` instead, so that decoding
and augmentation run in worker processes. A task declares such data with three generic pieces:

* a map-style :class:`~torch.utils.data.Dataset` of samples ``(image, target, ...)``: any one
  (``torch.utils.data.TensorDataset`` for arrays in memory) or :class:`ImageFiles` (image files
  decoded with Pillow, in the workers);
* an augmentation ``augment(sample, generator) -> sample`` (e.g. :class:`RandomCrop`) whose every
  random draw comes from ``generator``, seeded by ``(seed, epoch, index)`` alone: what sample ``i``
  looks like in epoch ``e`` does not depend on the batch size, the workers, the ranks, or where a
  resumed run started;
* :class:`LoadedData`, the task's ``train_data()`` / ``eval_data()``: ``batches(epoch, batch_size,
  rank, world_size, start=0)`` through a ``DataLoader`` with ``num_workers`` workers and pinned
  memory on CUDA (set by the trainer, :func:`configure_loading`). The epoch's order is a
  permutation drawn from a generator seeded by ``(seed, epoch)``; each global batch is cut into
  ``world_size`` contiguous chunks and rank ``r`` gets chunk ``r`` (the split of
  ``DistortedDigits``), so DDP sees exactly the single-process global batch and every sample once
  per epoch. (``DistributedSampler`` is not used: it pads an epoch by repeating samples and
  interleaves them, so the global batch would differ from the single-process one.) ``start`` skips
  batches without loading them: a run resumed mid-epoch continues at the same batch with the same
  order and augmentation.

Example:
    >>> import torch
    >>> from torch.utils.data import TensorDataset
    >>> from stnkit.experiments.data.loading import LoadedData, RandomCrop
    >>> samples = TensorDataset(torch.rand(10, 1, 8, 8), torch.arange(10))
    >>> data = LoadedData(samples, augment=RandomCrop((6, 6)), seed=0)
    >>> [(tuple(x.shape), len(y)) for x, y in data.batches(epoch=0, batch_size=4)]
    [((4, 1, 6, 6), 4), ((4, 1, 6, 6), 4), ((2, 1, 6, 6), 2)]
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from itertools import islice
from typing import Any, cast

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from ..._validate import check_positive_int, check_size
from .datasets import check_rank_split, derive_seed

Sample = tuple[Any, ...]
#: ``augment(sample, generator) -> sample``: every random draw from ``generator``.
Augment = Callable[[Sample, torch.Generator], Sample]

__all__ = [
    "Augment",
    "CenterCrop",
    "ImageFiles",
    "LoadedData",
    "RandomCrop",
    "batches_from",
    "configure_loading",
    "epoch_order",
    "rank_batches",
    "sample_generator",
]


def sample_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of sample ``index``'s augmentation in ``epoch`` (a function of the three alone)."""
    return torch.Generator().manual_seed(derive_seed("sample", seed, epoch, index))


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> Tensor:
    """The order ``(n,)`` int64 in which an epoch visits the samples: a permutation drawn from a
    generator seeded by ``(seed, epoch)``, or ``0..n-1`` without ``shuffle``."""
    if not shuffle:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed("order", seed, epoch)))


def rank_batches(
    order: Tensor, batch_size: int, rank: int = 0, world_size: int = 1, drop_last: bool = False
) -> list[list[int]]:
    """This rank's sample indices of each global batch of ``order``.

    ``order`` is cut into global batches of ``batch_size``; each is cut into ``world_size``
    contiguous chunks (a last, smaller batch as evenly as possible, the first chunks one sample
    longer, a chunk possibly empty) and rank ``rank`` gets chunk ``rank``. Every rank gets the same
    number of batches; over the ranks each sample appears once.

    Raises:
        ValueError: ``batch_size`` not a multiple of ``world_size``, or ``rank`` out of range.
    """
    check_rank_split(batch_size, rank, world_size)
    batches = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]  # (<= batch_size,)
        if drop_last and len(chunk) < batch_size:
            break
        batches.append(torch.tensor_split(chunk, world_size)[rank].tolist())
    return batches


class _EpochView(Dataset):
    """``dataset`` as seen in one epoch: sample ``i`` augmented with :func:`sample_generator`."""

    def __init__(self, dataset: Dataset, augment: Augment | None, seed: int, epoch: int) -> None:
        self.dataset, self.augment, self.seed, self.epoch = dataset, augment, seed, epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Sample:
        sample = tuple(self.dataset[index])
        if self.augment is None:
            return sample
        return tuple(self.augment(sample, sample_generator(self.seed, self.epoch, index)))


class _Collate:
    """``collate`` of a batch's samples as a tuple; an empty batch (a rank's empty chunk of a last,
    small batch) gets zero-length tensors shaped like sample 0's."""

    def __init__(self, view: Dataset, collate: Callable[[list[Sample]], Any]) -> None:
        self.view, self.collate = view, collate

    def __call__(self, samples: list[Sample]) -> tuple[Any, ...]:
        if samples:
            return tuple(self.collate(samples))
        return tuple(t[:0] for t in self.collate([self.view[0]]))


class LoadedData:
    """A map-style data set served in epochs through a ``DataLoader`` (see the module docs).

    Args:
        dataset: Map-style data set of sample tuples ``(image, target, ...)``.
        augment: ``augment(sample, generator) -> sample`` applied to every sample, its generator
            seeded by ``(seed, epoch, index)``; ``None``: samples as they are.
        seed: Seeds the order of every epoch and the augmentations.
        shuffle: A fresh order each epoch (training); ``False``: file order (evaluation).
        num_workers: ``DataLoader`` worker processes (0: load in the calling process).
        pin_memory: Pin the batches (for asynchronous copies to a CUDA device).
        collate: Turns a list of samples into a batch (default ``default_collate``: stacks them).

    Raises:
        ValueError: a bad ``seed`` or ``num_workers`` (named).
    """

    #: ``batches`` takes ``start`` (the trainer skips resumed batches without loading them).
    supports_start = True

    def __init__(
        self,
        dataset: Dataset,
        *,
        augment: Augment | None = None,
        seed: int = 0,
        shuffle: bool = True,
        num_workers: int = 0,
        pin_memory: bool = False,
        collate: Callable[[list[Sample]], Any] = default_collate,
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise TypeError(
                f"dataset: expected a map-style Dataset (with __getitem__ and __len__), got {type(dataset).__name__}"
            )
        if augment is not None and not callable(augment):
            raise TypeError(
                f"augment: expected a callable (sample, generator) -> sample or None, got {type(augment).__name__}"
            )
        self.dataset, self.augment, self.collate = dataset, augment, collate
        self.seed = check_positive_int("seed", seed, 0)
        self.shuffle = bool(shuffle)
        self.num_workers, self.pin_memory = 0, False
        self.set_loading(num_workers=num_workers, pin_memory=pin_memory)

    def set_loading(self, *, num_workers: int, pin_memory: bool) -> None:
        """How batches are loaded (never what they hold): worker processes and pinned memory."""
        self.num_workers = check_positive_int("num_workers", num_workers, 0)
        self.pin_memory = bool(pin_memory)

    def __len__(self) -> int:
        return len(self.dataset)

    def __repr__(self) -> str:
        return (
            f"LoadedData({type(self.dataset).__name__}, n={len(self)}, shuffle={self.shuffle}, "
            f"num_workers={self.num_workers})"
        )

    def epoch(self, epoch: int) -> Dataset:
        """The data set as epoch ``epoch`` sees it (sample ``i`` augmented as in that epoch)."""
        return _EpochView(self.dataset, self.augment, self.seed, check_positive_int("epoch", epoch, 0))

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1, drop_last: bool = False, start: int = 0
    ) -> Iterator[tuple[Any, ...]]:
        """Yields this rank's part of each global batch of an epoch, from batch ``start`` on.

        Args:
            epoch: Seeds the order (with ``shuffle``) and the augmentations.
            batch_size: Global batch size (all ranks together), a multiple of ``world_size``.
            rank, world_size: This process's place among the ranks (see :func:`rank_batches`).
            drop_last: Skip a last batch smaller than ``batch_size``.
            start: Batches of the epoch to skip (not loaded): a resumed run's batches already done.

        Yields:
            Tuples of batched sample fields, e.g. ``x (n, C, H, W)`` and ``y (n,)``.
        """
        view = self.epoch(epoch)
        order = epoch_order(len(self), self.seed, epoch, self.shuffle)
        plan = rank_batches(order, batch_size, rank, world_size, drop_last)[check_positive_int("start", start, 0) :]
        if not plan:
            return
        loader = DataLoader(
            view,
            batch_sampler=plan,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            collate_fn=_Collate(view, self.collate),
            # the loader's own draws (worker seeds) never touch the global RNG
            generator=torch.Generator().manual_seed(derive_seed("loader", self.seed, epoch)),
        )
        yield from loader


def configure_loading(data: Any, *, num_workers: int, pin_memory: bool) -> None:
    """Sets the workers and pinned memory of ``data`` where it loads through a ``DataLoader``
    (:meth:`LoadedData.set_loading`); other data (the digit tasks' fast path) is left alone."""
    check_positive_int("num_workers", num_workers, 0)
    set_loading = getattr(data, "set_loading", None)
    if callable(set_loading):
        set_loading(num_workers=num_workers, pin_memory=pin_memory)


def batches_from(
    data: Any, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1, start: int = 0
) -> Iterator[tuple[Any, ...]]:
    """``data.batches(...)`` from batch ``start`` on: skipped without loading them where ``data``
    supports it (:attr:`LoadedData.supports_start`), else drawn and dropped (the same batches)."""
    if getattr(data, "supports_start", False):
        return data.batches(epoch, batch_size, rank, world_size, start=start)
    return islice(data.batches(epoch, batch_size, rank, world_size), start, None)


# -- samples from files, augmentations -------------------------------------------------------------
class ImageFiles(Dataset):
    """Image files and their targets; sample ``i`` is ``(image float32 (C, H, W) in [0, 1], target_i)``.

    Decoded with Pillow when read (in the ``DataLoader`` workers).

    Args:
        paths: One image file per sample.
        targets: One target per sample (a tensor indexed along dim 0, or a sequence).
        mode: Pillow mode the images are converted to (``"L"``: 1 channel, ``"RGB"``: 3).
        size: Resize every image to ``(H, W)`` (bilinear); ``None``: keep each file's size.

    Raises:
        ValueError: ``paths`` and ``targets`` differ in length, or a bad ``size``.
        OSError: (when read) a missing or unreadable file, naming it.
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        targets: Tensor | Sequence[Any],
        *,
        mode: str = "RGB",
        size: tuple[int, int] | None = None,
    ) -> None:
        if len(paths) != len(targets):
            raise ValueError(f"targets: expected one per path ({len(paths)}), got {len(targets)}")
        self.paths, self.targets, self.mode = [os.fspath(p) for p in paths], targets, mode
        self.size = check_size("size", size, 2) if size is not None else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, Any]:
        import numpy as np
        from PIL import Image, UnidentifiedImageError

        path = self.paths[index]
        try:
            with Image.open(path) as image:
                image = image.convert(self.mode)
                if self.size is not None:
                    image = image.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                pixels = torch.from_numpy(np.array(image, dtype=np.uint8))  # (H, W) or (H, W, C)
        except (OSError, UnidentifiedImageError) as err:
            raise OSError(f"{path}: cannot read the image ({err})") from err
        x = pixels.unsqueeze(0) if pixels.ndim == 2 else pixels.permute(2, 0, 1)  # (C, H, W)
        return x.float() / 255, self.targets[index]


def _fit(image: Tensor, size: tuple[int, int]) -> tuple[int, int]:
    height, width = image.shape[-2:]
    if size[0] > height or size[1] > width:
        raise ValueError(f"size: a crop of {size} does not fit an image of {(height, width)}")
    return height, width


class RandomCrop:
    """Augmentation: a random ``size`` crop of the sample's image (field 0, ``(C, H, W)``), the
    corner uniform over every position, then a horizontal flip with probability ``flip``; the other
    fields pass unchanged.

    Args:
        size: Crop ``(H, W)``.
        flip: Probability of a left-right flip (0: never).
    """

    def __init__(self, size: tuple[int, int], flip: float = 0.0) -> None:
        self.size = cast("tuple[int, int]", check_size("size", size, 2))
        if not isinstance(flip, (int, float)) or isinstance(flip, bool) or not 0 <= flip <= 1:
            raise ValueError(f"flip: expected a probability in [0, 1], got {flip!r}")
        self.flip = float(flip)

    def __call__(self, sample: Sample, generator: torch.Generator) -> Sample:
        image = sample[0]
        height, width = _fit(image, self.size)
        top = int(torch.randint(height - self.size[0] + 1, (), generator=generator))
        left = int(torch.randint(width - self.size[1] + 1, (), generator=generator))
        crop = image[..., top : top + self.size[0], left : left + self.size[1]]  # (C, h, w)
        if self.flip and float(torch.rand((), generator=generator)) < self.flip:
            crop = crop.flip(-1)
        return (crop.contiguous(), *sample[1:])


class CenterCrop:
    """The deterministic counterpart of :class:`RandomCrop` (evaluation): the centred ``size`` crop."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = cast("tuple[int, int]", check_size("size", size, 2))

    def __call__(self, sample: Sample, generator: torch.Generator | None = None) -> Sample:
        image = sample[0]
        height, width = _fit(image, self.size)
        top, left = (height - self.size[0]) // 2, (width - self.size[1]) // 2
        return (image[..., top : top + self.size[0], left : left + self.size[1]].contiguous(), *sample[1:])
