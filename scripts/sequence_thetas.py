"""A trained multi-digit run on the task's fixed test sequences: sequence error, and what each transformer does.

    python scripts/sequence_thetas.py RUN [--n 10000] [--theta-n 256] [--data-dir DIR]

Prints the sequence error and per-position accuracy over the first ``--n`` test sequences (the run's own
``--test-limit`` is ignored) and, for a model with transformers, the mean and the standard deviation
across images of each theta entry over the first ``--theta-n`` of them (the identity is
``1 0 0 0 1 0``; a std near 0 means the same warp for every image). 1 thread.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from stnkit.experiments.tasks.sequences import sequence_error
from stnkit.experiments.train.build import make_task
from stnkit.experiments.train.evaluate import load_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run")
    parser.add_argument("--n", type=int, default=10000, help="test sequences scored")
    parser.add_argument("--theta-n", type=int, default=256, help="test sequences whose thetas are summarised")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, config = load_run(args.run)
    task = make_task(dataclasses.replace(config, test_limit=args.n), data_dir=args.data_dir)
    data = task.eval_data()
    print(args.run, {k: round(v, 2) for k, v in sequence_error(model, data.batches(0, 500)).items()})
    x, _ = next(data.batches(0, args.theta_n))
    with torch.no_grad():
        _, thetas = model(x, return_thetas=True)
    for i, theta in enumerate(thetas, start=1):
        mean = " ".join(f"{v:+.3f}" for v in theta.mean(0).tolist())
        std = " ".join(f"{v:.3f}" for v in theta.std(0).tolist())
        print(f"ST {i}: theta mean {mean} | std {std}")


if __name__ == "__main__":
    main()
