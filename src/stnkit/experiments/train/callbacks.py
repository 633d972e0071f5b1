"""Callbacks: hooks the trainer calls on rank 0 with the model unwrapped from DDP.

Any object with some of these methods is a callback (missing methods are skipped), e.g.
``stnkit.experiments.viz.TrainingAnimation``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from torch import nn


class Callback(Protocol):
    def on_train_start(self, model: nn.Module, run_dir: Path) -> None: ...

    def on_epoch_end(self, model: nn.Module, epoch: int, metrics: dict, run_dir: Path) -> None: ...

    def on_train_end(self, model: nn.Module, run_dir: Path) -> None: ...


class OptionalHooks(Protocol):
    """Finer hook the trainer also calls when a callback defines it (after every optimizer step)."""

    def on_step_end(self, model: nn.Module, iteration: int, loss: float) -> None: ...


def call(callbacks: Iterable[Any], hook: str, *args: Any) -> None:
    """Calls ``hook(*args)`` on every callback that defines it, in order."""
    for cb in callbacks:
        method = getattr(cb, hook, None)
        if method is not None:
            method(*args)
