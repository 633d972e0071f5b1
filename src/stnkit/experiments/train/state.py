"""The trainer's named state: where a run stands, saved in and restored from its checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class EpochTotals:
    """Running totals of the current epoch (over every rank), reset at each epoch's end.

    Attributes:
        loss: Sum of the per-sample losses.
        count: Samples seen.
        seconds: Time in the training loop (evaluation and callbacks excluded).
        sums: The task's metric sums (e.g. ``{"correct": ...}``), see ``Task.train_metrics``.
    """

    loss: float = 0.0
    count: float = 0.0
    seconds: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)

    def added(self, loss: float, count: float, sums: dict[str, float], seconds: float) -> EpochTotals:
        """These totals plus one step's (``seconds`` is the epoch's running time, not an increment)."""
        merged = {key: self.sums.get(key, 0.0) + value for key, value in sums.items()}
        return EpochTotals(self.loss + loss, self.count + count, seconds, {**self.sums, **merged})

    def to_checkpoint(self) -> dict[str, Any]:
        return {"loss": self.loss, "count": self.count, "seconds": self.seconds, "sums": dict(self.sums)}

    @classmethod
    def from_checkpoint(cls, value: Any) -> EpochTotals:
        """Reads :meth:`to_checkpoint`'s dict, or the ``[loss, correct, images, seconds]`` list of
        checkpoints written before tasks (0.1.x)."""
        if isinstance(value, (list, tuple)):
            loss, correct, count, seconds = (float(v) for v in value)
            return cls(loss, count, seconds, {"correct": correct})
        return cls(
            float(value["loss"]),
            float(value["count"]),
            float(value["seconds"]),
            {str(k): float(v) for k, v in value["sums"].items()},
        )


@dataclass
class TrainState:
    """Where a run stands.

    Attributes:
        iteration: Optimizer steps done (the learning-rate schedule's clock).
        epoch: Epochs done.
        batch: Batches done in the current epoch (a resumed run skips them).
        partial: Totals of the current epoch so far.
        metrics: One row per finished epoch (``metrics.jsonl``).
        elapsed: Seconds in the training loop over the finished epochs.
    """

    iteration: int = 0
    epoch: int = 0
    batch: int = 0
    partial: EpochTotals = field(default_factory=EpochTotals)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    elapsed: float = 0.0

    def to_checkpoint(self, schedule: str) -> dict[str, Any]:
        """The checkpoint entries of this state (the model, optimizer and RNG are added by the trainer)."""
        return {
            "scheduler": {"iteration": self.iteration, "schedule": schedule},
            "epoch": self.epoch,
            "batch": self.batch,
            "partial": self.partial.to_checkpoint(),
            "metrics": list(self.metrics),
            "elapsed_s": self.elapsed,
        }

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> TrainState:
        return cls(
            int(state["scheduler"]["iteration"]),
            int(state["epoch"]),
            int(state["batch"]),
            EpochTotals.from_checkpoint(state["partial"]),
            list(state["metrics"]),
            float(state["elapsed_s"]),
        )
