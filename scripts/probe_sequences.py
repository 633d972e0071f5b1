"""Learning probe for the multi-digit models on MNIST sequences: training-batch metrics every 100 steps.

    python scripts/probe_sequences.py [--model multidigit-cnn] [--steps 900] [--positions 5] [--scale 0.45]

The same as ``stnkit train --task mnist-sequences --model MODEL --optimizer adam --lr 1e-3 --batch-size 64
--model-options '{"width": 0.25, "dropout": 0.0, "batch_norm": true}'`` for ``--steps`` steps of the first
epoch (full MNIST from $STNKIT_DATA_DIR), printing the running sequence error and per-position accuracy
of the training batches and the process CPU seconds, 1 thread. ``--positions 1`` is the one-digit sanity check.
"""

from __future__ import annotations

import argparse
import time

import torch

from stnkit.experiments.data.sequences import DigitSequences
from stnkit.experiments.models import create_model
from stnkit.experiments.tasks.sequences import sequence_counts, sequence_loss, sequence_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="multidigit-cnn")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--positions", type=int, default=5)
    parser.add_argument("--scale", type=float, default=0.45, help="smallest strip scale (largest: 1.33 x)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = DigitSequences("train", positions=args.positions, scale=(args.scale, args.scale * 4 / 3))
    torch.manual_seed(0)
    model = create_model(args.model, in_shape=(1, 64, 64), num_classes=11, positions=args.positions, width=0.25,
                         dropout=0.0, batch_norm=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    sums: dict[str, float] = {}
    n = 0
    for step, (x, y) in enumerate(data.batches(0, 64), start=1):
        logits = model(x)
        loss = sequence_loss(logits, y) / len(y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for key, value in sequence_counts(logits.detach(), y).items():
            sums[key] = sums.get(key, 0.0) + value
        n += len(y)
        if step % 100 == 0:
            metrics = {k: round(v, 1) for k, v in sequence_metrics(sums, n).items()}
            print(step, metrics, f"{time.process_time():.0f} CPU s", flush=True)
            sums, n = {}, 0
        if step == args.steps:
            break


if __name__ == "__main__":
    main()
