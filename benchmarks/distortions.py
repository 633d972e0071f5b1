"""Throughput of the distorted-digit pipeline: images per second for each distortion.

Measures :meth:`stnkit.experiments.data.DistortedDigits.batches` over one training epoch (fresh draws, shuffled
order, other digits gathered for ``tc`` / ``addition``, batches of 256), on the MNIST training
digits that :func:`stnkit.experiments.data.load_digits` finds (the embedded sample when offline). The issue's
bar: at least 20,000 RTS images per second on a 2-core CPU.

Run: ``python -c "from benchmarks.distortions import run; print(run())"`` or
``python -m benchmarks.distortions [THREADS]``.
"""

from __future__ import annotations

import logging
import statistics
import time

import torch

from stnkit.experiments.data import DistortedDigits, list_distortions, load_digits

RTS_TARGET = 20_000  # images per second (issue 3)
BATCH_SIZE = 256


def _epoch_seconds(data: DistortedDigits, epoch: int) -> float:
    start = time.perf_counter()
    for _ in data.batches(epoch, BATCH_SIZE):
        pass
    return time.perf_counter() - start


def run(smoke: bool = False, threads: int | None = None) -> list[dict]:
    """Measures every registered distortion.

    Args:
        smoke: A quick check (1,024 samples, one timed epoch) instead of the full measurement
            (16,384 samples, three timed epochs).
        threads: ``torch.set_num_threads`` for the measurement (restored afterwards); default: the
            current setting. On a CPU shared with other jobs, 1 thread is often faster than 2.

    Returns:
        One dict per distortion: ``name`` (``"distortions/<name>"``), ``distortion``, ``shape``
        ``(C, H, W)``, ``n`` samples per epoch, ``seconds`` (median epoch), ``images_per_s``
        (samples per second over the median epoch; an ``addition`` sample holds two digits),
        ``best_images_per_s`` (fastest epoch), ``threads``, ``source`` (``"mnist"`` or
        ``"embedded"``), and for ``rts`` ``target_images_per_s`` and ``meets_target``.
    """
    n, repeats = (1024, 1) if smoke else (16384, 3)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(n, repeats)
    finally:
        torch.set_num_threads(previous)


def _measure(n: int, repeats: int) -> list[dict]:
    logger = logging.getLogger("stnkit.experiments.data")
    level = logger.level
    logger.setLevel(logging.ERROR)  # the embedded-sample warning is expected here
    try:
        digits = load_digits("mnist", "train")
    finally:
        logger.setLevel(level)
    rows = []
    for name in list_distortions():
        data = DistortedDigits(name, "train", digits=digits, limit=n)
        _epoch_seconds(data, 0)  # warm-up: caches, thread pool
        times = [_epoch_seconds(data, 1 + r) for r in range(repeats)]
        seconds = statistics.median(times)
        row = {"name": f"distortions/{name}", "distortion": name, "shape": (data.channels, *data.size),
               "n": len(data), "seconds": round(seconds, 4), "images_per_s": round(len(data) / seconds),
               "best_images_per_s": round(len(data) / min(times)), "threads": torch.get_num_threads(),
               "source": "embedded" if digits.embedded else "mnist"}
        if name == "rts":
            row["target_images_per_s"] = RTS_TARGET
            row["meets_target"] = row["images_per_s"] >= RTS_TARGET
        rows.append(row)
    return rows


if __name__ == "__main__":
    import sys

    for row in run(threads=int(sys.argv[1]) if len(sys.argv) > 1 else None):
        print(f"{row['distortion']:>9} {str(row['shape']):>12} {row['images_per_s']:>10,} images/s")
