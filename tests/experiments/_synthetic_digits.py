"""Small synthetic MNIST-format data sets for the training tests (written with ``struct``/``gzip``
here, independently of ``stnkit.experiments.data``). Class ``k`` is a bright 8x8 square at one of ten fixed
places plus faint noise, so a few SGD steps already learn something."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import torch

FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


def _images(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    n = len(labels)
    x = torch.randint(0, 40, (n, 28, 28), generator=generator, dtype=torch.int64)
    for i, k in enumerate(labels.tolist()):
        r, c = 2 + 12 * (k // 5), 1 + 5 * (k % 5)
        x[i, r:r + 8, c:c + 8] = 255
    return x.to(torch.uint8)


def write_synthetic_mnist(folder: Path, n_train: int = 64, n_test: int = 32, seed: int = 0) -> Path:
    """Writes the four gzip IDX files of a synthetic MNIST into ``folder``; returns ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = torch.arange(n) % 10
        labels = labels[torch.randperm(n, generator=g)]
        images = _images(labels, g)
        image_file, label_file = FILES[split]
        header = struct.pack(">IIII", 2051, n, 28, 28)
        (folder / image_file).write_bytes(gzip.compress(header + images.numpy().tobytes()))
        (folder / label_file).write_bytes(gzip.compress(struct.pack(">II", 2049, n) +
                                                        labels.to(torch.uint8).numpy().tobytes()))
    return folder
