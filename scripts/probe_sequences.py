"""Learning probe for the multi-digit models on MNIST sequences: training-batch metrics every ``--every`` steps.

    python scripts/probe_sequences.py [--model multidigit-cnn] [--steps 900] [--positions 5] [--scale 0.45 0.6]
        [--angle 15] [--centred] [--lr 1e-3] [--batch-size 64] [--fc-layers 3] [--no-batch-norm]
        [--fc-batch-norm] [--prior-bias] [--readout R] [--warmup W] [--cosine]

The recipe of ``stnkit train --task mnist-sequences --model MODEL`` (Adam, width 0.25, batch norm, no
dropout, localisation lr 0.1x) on fresh draws of the 64x64 generator (full MNIST from $STNKIT_DATA_DIR),
printing the running sequence error, the per-position accuracy of the training batches and the process
CPU seconds, 1 thread. The data knobs isolate what makes the task hard: ``--scale LOW HIGH`` and
``--angle A`` (rotation in [-A, A]) of the strip, ``--centred`` (the strip in the middle of the canvas);
``--positions 1`` is the one-digit sanity check. Batches are drawn from one generator seeded 0 and the
weights from ``torch.manual_seed(0)``, so a command prints the same numbers on every run.
"""

from __future__ import annotations

import argparse
import time

import torch

from stnkit.experiments.data.sequences import DigitSequences
from stnkit.experiments.models import create_model
from stnkit.experiments.tasks.sequences import sequence_counts, sequence_loss, sequence_metrics
from stnkit.experiments.train.config import TrainConfig
from stnkit.experiments.train.optim import lr_factor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="multidigit-cnn")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--every", type=int, default=100, help="steps between printed lines")
    parser.add_argument("--positions", type=int, default=5)
    parser.add_argument("--scale", type=float, nargs=2, default=(0.45, 0.6), metavar=("LOW", "HIGH"))
    parser.add_argument("--angle", type=float, default=15.0, help="rotation range [-A, A] in degrees")
    parser.add_argument("--centred", action="store_true", help="the strip always in the canvas centre")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--fc-layers", type=int, default=3)
    parser.add_argument("--no-batch-norm", action="store_true")
    parser.add_argument("--fc-batch-norm", action="store_true", help="batch norm on the FC hidden layers too")
    parser.add_argument("--prior-bias", action="store_true", help="heads' biases at the log label frequencies")
    parser.add_argument("--readout", default="flatten", help="flatten, column-max, max or avg")
    parser.add_argument("--warmup", type=int, default=0, help="linear lr warm-up steps")
    parser.add_argument("--cosine", action="store_true", help="cosine decay of the lr to 0 at --steps")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = DigitSequences("train", positions=args.positions, scale=tuple(args.scale), angle=(-args.angle, args.angle))
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model(args.model, in_shape=(1, 64, 64), num_classes=11, positions=args.positions,
                         width=args.width, dropout=0.0, batch_norm=not args.no_batch_norm, fc_layers=args.fc_layers,
                         fc_batch_norm=args.fc_batch_norm, prior_bias=args.prior_bias, readout=args.readout)
    loc = [p for name, p in model.named_parameters() if name.startswith("series.")]
    rest = [p for name, p in model.named_parameters() if not name.startswith("series.")]
    optimizer = torch.optim.Adam([{"params": rest}, {"params": loc, "lr": args.lr * 0.1}], lr=args.lr)
    config = TrainConfig(schedule="cosine" if args.cosine else "constant", warmup_iterations=args.warmup)
    sums: dict[str, float] = {}
    n, start = 0, time.process_time()
    for step in range(1, args.steps + 1):
        params = data.make_params(args.batch_size, generator)
        if args.centred:
            params["ox"].zero_()
            params["oy"].zero_()
        x, y = data.render(params)
        factor = lr_factor(config, step - 1, args.steps)
        for group, base in zip(optimizer.param_groups, (args.lr, args.lr * 0.1), strict=True):
            group["lr"] = base * factor
        logits = model(x)
        loss = sequence_loss(logits, y) / len(y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for key, value in sequence_counts(logits.detach(), y).items():
            sums[key] = sums.get(key, 0.0) + value
        n += len(y)
        if step % args.every == 0:
            metrics = {k: round(v, 1) for k, v in sequence_metrics(sums, n).items()}
            print(step, metrics, f"loss {loss.item():.2f}", f"{time.process_time() - start:.0f} CPU s", flush=True)
            sums, n = {}, 0


if __name__ == "__main__":
    main()
