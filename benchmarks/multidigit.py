"""Step time of the Table 2 models side by side: ``python -m benchmarks.multidigit [--width W] [--device D]``.

One training step (forward, backward, Adam step) of ``multidigit-cnn``, ``st-cnn-single`` and
``st-cnn-multi`` on a batch of random 1-channel images at 64 and 128 px, and each model's ratio to
the CNN. The paper's "ST-CNN Multi is only 6% slower than the CNN" is for the full-width model
(``--width 1``) on a GPU; on a CPU, at a reduced width, the ratio is only what it is. CPU times are
process CPU seconds (1 thread), GPU times wall seconds after a synchronise; the median of
``--repeats`` steps after ``--warmup``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

MODELS = ("multidigit-cnn", "st-cnn-single", "st-cnn-multi")


def step_time(name: str, size: int, width: float, batch: int, device: str, repeats: int, warmup: int) -> float:
    from stnkit.experiments.models import create_model
    from stnkit.experiments.tasks.sequences import sequence_loss

    torch.manual_seed(0)
    model = create_model(name, in_shape=(1, size, size), num_classes=11, width=width, dropout=0.0).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 1, size, size, device=device)
    y = torch.randint(0, 11, (batch, 5), device=device)
    clock = time.perf_counter if device != "cpu" else time.process_time
    times = []
    for i in range(warmup + repeats):
        if device != "cpu":
            torch.cuda.synchronize()
        start = clock()
        loss = sequence_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device != "cpu":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(clock() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    args = parser.parse_args()
    if args.device == "cpu":
        torch.set_num_threads(1)
    print(f"device {args.device}, width {args.width}, batch {args.batch}, median of {args.repeats} steps")
    print(f"{'size':>5} {'model':>15} {'s/step':>8} {'img/s':>8} {'x CNN':>6}")
    for size in args.sizes:
        base = None
        for name in MODELS:
            t = step_time(name, size, args.width, args.batch, args.device, args.repeats, args.warmup)
            base = base or t
            print(f"{size:>5} {name:>15} {t:8.3f} {args.batch / t:8.1f} {t / base:6.2f}")


if __name__ == "__main__":
    main()
