"""The progress bar and the run's ETA, as a trainer callback (rank 0)."""

from __future__ import annotations

import math
from typing import Any


def eta_seconds(iterations_left: int, epoch_seconds: float, batches_done: int) -> float:
    """Seconds left at the current epoch's pace (NaN before the first batch)."""
    return iterations_left * epoch_seconds / batches_done if batches_done else float("nan")


def clock(seconds: float) -> str:
    """``mm:ss`` or ``h:mm:ss``; ``?`` for a non-finite number."""
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class ProgressBar:
    """A tqdm bar per epoch: loss, the task's training metrics, images/s, learning rate and run ETA.

    Hooks (called by the trainer on rank 0): ``on_epoch_begin(trainer)``, ``on_batch_end(trainer,
    lr)`` and ``on_epoch_close(trainer)`` (also when the epoch stops on an error).
    """

    def __init__(self) -> None:
        self._bar: Any = None

    def on_epoch_begin(self, trainer: Any) -> None:
        from tqdm.auto import tqdm

        cfg, state = trainer.config, trainer.state
        self._bar = tqdm(
            total=trainer.steps_per_epoch,
            initial=state.batch,
            desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
            unit="batch",
            leave=False,
            dynamic_ncols=True,
        )

    def on_batch_end(self, trainer: Any, lr: float) -> None:
        state, p = trainer.state, trainer.state.partial
        n = max(p.count, 1)
        metrics = " ".join(f"{name} {value:.1f}%" for name, value in trainer.task.train_metrics(p.sums, n).items())
        eta = eta_seconds(trainer.total_iterations - state.iteration, p.seconds, state.batch)
        self._bar.update(1)
        self._bar.set_postfix_str(
            f"loss {p.loss / n:.3f} {metrics} {p.count / max(p.seconds, 1e-9):.0f} img/s "
            f"lr {lr:.2g} run ETA {clock(eta)}",
            refresh=False,
        )

    def on_epoch_close(self, trainer: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
