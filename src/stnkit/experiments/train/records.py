"""What a run records at the end of each epoch: its row of ``metrics.jsonl`` and its log line.

Pure functions of the task and the epoch's totals; the trainer
(:mod:`~stnkit.experiments.train.trainer`) writes the row and logs the line.
"""

from __future__ import annotations

from typing import Any

from ..tasks import Task
from .state import EpochTotals


def epoch_row(
    task: Task, totals: EpochTotals, test: dict[str, Any] | None, *, epoch: int, lr: float, elapsed: float
) -> dict[str, Any]:
    """One row of ``metrics.jsonl``.

    Args:
        task: The run's task (its metric names and training metrics).
        totals: The finished epoch's totals over every rank.
        test: The task's evaluation of the epoch's model (``None`` on ranks other than 0).
        epoch: Epochs done, this one included.
        lr: The learning rate of the epoch's last step.
        elapsed: Seconds in the training loop over all finished epochs.

    Returns:
        ``{"epoch", "train_loss", "train_<metric>"..., "test_<metric>"..., "lr", "epoch_time_s",
        "images_per_s", "elapsed_s"}``; a test metric is ``None`` without ``test``.
    """
    row: dict[str, Any] = {"epoch": epoch, "train_loss": totals.loss / max(totals.count, 1)}
    row.update({f"train_{k}": v for k, v in task.train_metrics(totals.sums, totals.count).items()})
    row.update({f"test_{m.name}": test[m.name] if test else None for m in task.metrics})
    row.update(
        {
            "lr": lr,
            "epoch_time_s": totals.seconds,
            "images_per_s": totals.count / max(totals.seconds, 1e-9),
            "elapsed_s": elapsed,
        }
    )
    return row


def epoch_line(task: Task, row: dict[str, Any], epochs: int) -> str:
    """``epoch 2/10: train loss 0.1234, train error 3.10%, test error 2.50%, 12.3 s (4875 img/s)``:
    the log line of an :func:`epoch_row` (metrics with their unit, those that are ``None`` left out)."""
    unit = {m.name: m.unit for m in task.metrics}
    shown = ", ".join(
        f"{k.replace('_', ' ')} {v:.2f}{unit.get(k.split('_', 1)[1], '')}"
        for k, v in row.items()
        if k.split("_", 1)[0] in ("train", "test") and k != "train_loss" and v is not None
    )
    return (
        f"epoch {row['epoch']}/{epochs}: train loss {row['train_loss']:.4f}, {shown}, "
        f"{row['epoch_time_s']:.1f} s ({row['images_per_s']:.0f} img/s)"
    )
