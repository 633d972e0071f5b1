"""CPU cost of the 3-D task ``mnist3d`` on one thread: generating a volume, and one training step of
``flat-cnn`` / ``st3d-cnn`` (forward, backward, Adam), per sample, at several volume sizes.

Usage: ``python scripts/mnist3d_cost.py [SIZE ...]`` (default 60 32). CPU time (``time.process_time``),
batch 64, random digits (the cost does not depend on the digits' content)."""

from __future__ import annotations

import sys
import time

import torch
import torch.nn.functional as F

from stnkit.experiments.data.volumes import draw_poses, render
from stnkit.experiments.models import count_parameters, create_model

BATCH = 64


def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    """One training step: forward, cross-entropy, backward, update."""
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def main(sizes: list[int]) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    digits = torch.randint(0, 256, (BATCH, 28, 28), dtype=torch.uint8, generator=g)
    for size in sizes:
        poses = draw_poses(BATCH, g)
        render(digits[:2], poses.take(torch.arange(2)), size)  # warm-up
        start = time.process_time()
        x = render(digits, poses, size)
        print(f"size {size}: generation {1000 * (time.process_time() - start) / BATCH:.2f} ms/volume")
        y = torch.randint(0, 10, (BATCH,), generator=g)
        for name, transform in (("flat-cnn", "affine3d"), ("st3d-cnn", "affine3d")):
            torch.manual_seed(0)
            model = create_model(name, in_shape=(1, size, size, size), num_classes=10, transform=transform)
            optimizer = torch.optim.Adam(model.parameters(), 1e-3)

            step(model, optimizer, x, y)  # warm-up
            start = time.process_time()
            step(model, optimizer, x, y)
            step(model, optimizer, x, y)
            ms = 1000 * (time.process_time() - start) / 2 / BATCH
            print(f"size {size}: {name} {count_parameters(model):,} parameters, training step {ms:.2f} ms/sample")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]] or [60, 32])
