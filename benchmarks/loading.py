"""Data loading, side by side: why the digit tasks keep their batched fast path, and what workers buy.

* ``digits``: one RTS training epoch of ``DistortedDigits.batches`` (a whole batch of distortions
  drawn and applied at once) against the same distortion drawn sample by sample through a
  ``LoadedData`` / ``DataLoader`` (per-sample generators seeded by ``(seed, epoch, index)``, no
  workers): the ratio is what routing the digits through a ``DataLoader`` would cost. CPU time, 1 thread.
* ``files``: one epoch of ``LoadedData(ImageFiles(...), RandomCrop)`` over PNG files written to a
  temporary folder, with 0 and 2 workers. Wall time (workers run in other processes); on a shared
  CPU it says little more than "workers work".

Run: ``python -m benchmarks.loading [N]`` (default N=4096 digits / 1024 files).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from stnkit.experiments.data import DistortedDigits, ImageFiles, LoadedData, RandomCrop, get_distortion, load_digits

BATCH_SIZE = 256
RTS = get_distortion("rts")


class _OneByOne(Dataset):
    """Digit ``i`` under one RTS draw of its own (what a per-sample ``DataLoader`` would do)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]


def _distort(sample, generator):
    image, label = sample
    x = RTS.apply(image[None], RTS.make_params(1, generator))  # (1, 1, 42, 42)
    return x[0], label


def _seconds(batches, clock) -> float:
    start = clock()
    for _ in batches:
        pass
    return clock() - start


def digits(n: int) -> tuple[float, float]:
    """CPU seconds of one epoch: batched fast path, per-sample DataLoader."""
    source = load_digits("mnist", "train")
    fast = DistortedDigits("rts", "train", limit=n, digits=source)
    slow = LoadedData(_OneByOne(source.images[:n], source.labels[:n]), augment=_distort)
    times = {"fast": [], "slow": []}
    for epoch in range(3):
        times["fast"].append(_seconds(fast.batches(epoch, BATCH_SIZE), time.process_time))
        times["slow"].append(_seconds(slow.batches(epoch, BATCH_SIZE), time.process_time))
    return min(times["fast"]), min(times["slow"])


def files(n: int) -> dict[int, float]:
    """Wall seconds of one epoch of PNG files with 0 and 2 workers."""
    rng = np.random.default_rng(0)
    from PIL import Image

    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / f"{i}.png" for i in range(n)]
        for path in paths:
            Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(path)
        data = LoadedData(ImageFiles(paths, torch.zeros(n, dtype=torch.long)), augment=RandomCrop((54, 54), flip=0.5))
        result = {}
        for workers in (0, 2, 0, 2):
            data.set_loading(num_workers=workers, pin_memory=False)
            seconds = _seconds(data.batches(0, BATCH_SIZE), time.perf_counter)
            result[workers] = min(result.get(workers, seconds), seconds)
        return result


def main(argv: list[str]) -> None:
    torch.set_num_threads(1)
    n = int(argv[0]) if argv else 4096
    fast, slow = digits(n)
    print(f"digits rts, {n} images, CPU s per epoch (best of 3): batched {fast:.3f} ({n / fast:,.0f} img/s), "
          f"per-sample DataLoader {slow:.3f} ({n / slow:,.0f} img/s), ratio {slow / fast:.1f}x")
    seconds = files(n // 4)
    print(f"PNG files 64x64 RGB -> 54x54 crops, {n // 4} images, wall s per epoch (best of 2): "
          f"0 workers {seconds[0]:.3f}, 2 workers {seconds[2]:.3f}, ratio {seconds[0] / seconds[2]:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1:])
