"""Parallel attention (issue 10): what each model of the ``parts`` comparison costs, side by side,
and the memory that sampling K heads from the uncopied input saves.

``python -m benchmarks.parts [--repeats N]`` prints, for each model of the comparison (the task's
recipe options: ResNet width 8, 32x32 crops), its trainable parameters and the median CPU time of one
Adam training step on a batch of 64 canvases (1 thread), with the ratio to ``down-cnn`` at 32x32;
then the peak memory of ``SpatialTransformer(heads=K)``-style sampling: ``stnkit.warp_heads`` against
warping a K-fold copy of the input (the previous heads path), 448px, K = 4, batch 16.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from . import _timing

WIDTH = {"backbone_options": {"width": 8}}
MODELS = {  # label -> (model, options)
    "down-cnn 32 (canvas 3x area-pooled)": ("down-cnn", {**WIDTH, "crop_size": [32, 32]}),
    "down-cnn 96 (full resolution)": ("down-cnn", {**WIDTH, "crop_size": [96, 96]}),
    "2xattn-cnn (crops 32 of 48px boxes)": ("2xattn-cnn", {**WIDTH, "crop_size": [32, 32]}),
    "2xattn-cnn frozen boxes": ("2xattn-cnn", {**WIDTH, "crop_size": [32, 32], "freeze_boxes": True}),
    "2xattn-cnn reading the 32px canvas": ("2xattn-cnn", {**WIDTH, "crop_size": [32, 32], "read": "downsampled"}),
    "4xattn-cnn": ("4xattn-cnn", {**WIDTH, "crop_size": [32, 32]}),
}


def step_times(repeats: int) -> list[tuple[str, int, float]]:
    """``(label, trainable params, median CPU ms per training step)`` of each model."""
    from stnkit.experiments.models import count_parameters, create_model

    torch.manual_seed(0)
    x, y = torch.rand(64, 1, 96, 96), torch.randint(20, (64,))
    steps = {}
    params = {}
    for label, (name, options) in MODELS.items():
        model = create_model(name, in_shape=(1, 96, 96), num_classes=20, **options)
        params[label] = count_parameters(model)
        optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)

        def step(model=model, optimizer=optimizer) -> None:
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()

        steps[label] = step
    times = _timing.interleaved(steps, repeats=repeats, warmup=1)
    return [(label, params[label], times[label]) for label in MODELS]


def head_memory(k: int = 4, n: int = 16, size: int = 448, crop: int = 224) -> tuple[int | None, int | None]:
    """Peak bytes of sampling ``k`` crops per image: ``warp_heads`` vs a K-fold copy of the input."""
    import stnkit

    x = torch.rand(n, 3, size, size)
    theta = torch.tensor([[0.5, -0.5, -0.5], [0.5, 0.5, -0.5], [0.5, -0.5, 0.5], [0.5, 0.5, 0.5]])[:k]
    theta = theta.expand(n, k, 3)

    def uncopied() -> None:
        stnkit.warp_heads(x, theta, "attention", (crop, crop))

    def copied() -> None:
        copies = x.unsqueeze(1).expand(n, k, *x.shape[1:]).reshape(n * k, *x.shape[1:])  # (N*K, C, H, W)
        stnkit.warp(copies, theta.reshape(n * k, 3), "attention", (crop, crop))

    return _timing.peak_memory_bytes(uncopied), _timing.peak_memory_bytes(copied)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    _timing.use_cpu_clock()
    rows = step_times(args.repeats)
    base = rows[0][2]
    print(f"machine: {_timing.cpu_name()}, 1 thread, CPU time; batch 64 of 1x96x96, Adam step")
    print(f"{'model':40s} {'params':>9s} {'ms/step':>9s} {'vs down-cnn 32':>15s}")
    for label, params, ms in rows:
        print(f"{label:40s} {params:9d} {ms:9.1f} {ms / base:14.2f}x")
    ours, copy = head_memory()
    if ours is not None and copy is not None:
        print(f"K=4 crops of 224 from 16x3x448x448: warp_heads peak {ours / 2**20:.0f} MiB, "
              f"K-fold copy {copy / 2**20:.0f} MiB ({copy / ours:.2f}x)")


if __name__ == "__main__":
    main()
