"""Checkpoint and resume: what a checkpoint holds, what it is restored into, what may change when a
run is resumed, and the Ctrl-C that stops a run at a step it can resume from.

The trainer (:mod:`~stnkit.experiments.train.trainer`) calls these; the files themselves are written
atomically by :mod:`~stnkit.experiments.train.checkpoint`.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Any

import torch
from torch import nn

from ..models import count_parameters
from .build import saved_config
from .config import TrainConfig
from .state import TrainState

log = logging.getLogger(__name__)

# Settings that may change when a run is resumed; anything else would change the result.
RESUMABLE_CHANGES = {
    "epochs",
    "device",
    "threads",
    "data_dir",
    "download",
    "eval_batch_size",
    "compile",
    "amp",
    "channels_last",
    "num_workers",
    "checkpoint_every",
}


def checkpoint_state(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    config: TrainConfig,
    in_shape: tuple[int, ...],
    num_classes: int,
) -> dict[str, Any]:
    """Everything needed to continue a run exactly where it is: weights, optimizer, ``state``, the
    global torch RNG, the config and the model's input shape ``(C, H, W)`` (or ``(C, D, H, W)``)."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        **state.to_checkpoint(config.schedule),
        "rng": {"torch": torch.get_rng_state()},
        "config": config.to_dict(),
        "in_shape": list(in_shape),
        "num_classes": num_classes,
        "params": count_parameters(model),
    }


def restore_state(
    saved: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: TrainConfig,
    in_shape: tuple[int, ...],
    num_classes: int,
) -> TrainState:
    """Loads a :func:`checkpoint_state` dict into ``model``, ``optimizer`` and the global torch RNG.

    Returns:
        The run's :class:`~.state.TrainState` at the checkpoint.

    Raises:
        ValueError: when ``config`` changes a setting outside :data:`RESUMABLE_CHANGES`, or the data's
            ``in_shape`` / ``num_classes`` differ from the checkpoint's model.
    """
    check_resumable(saved_config(saved), config, bool(getattr(model, "spatial_transformers", None)))
    if tuple(saved["in_shape"]) != in_shape or saved["num_classes"] != num_classes:
        raise ValueError(
            f"resume: the checkpoint's model takes {tuple(saved['in_shape'])} images and "
            f"{saved['num_classes']} classes; the data gives {in_shape} and {num_classes}"
        )
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    torch.set_rng_state(saved["rng"]["torch"])
    return TrainState.from_checkpoint(saved)


def check_resumable(saved: TrainConfig, given: TrainConfig, has_st: bool) -> None:
    """Refuses a resume whose settings ``given`` differ from the ``saved`` ones outside
    :data:`RESUMABLE_CHANGES` (the transform settings are free for models without an ST).

    Raises:
        ValueError: naming the first setting that differs, its recorded and its given value.
    """
    free = RESUMABLE_CHANGES | (set() if has_st else {"transform", "transform_options", "loc_lr_mult"})
    for key, value in given.to_dict().items():
        if key not in free and getattr(saved, key) != value:
            raise ValueError(
                f"resume: {key} was {getattr(saved, key)!r} in the run being resumed, got {value!r}; "
                f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change when resuming"
            )


def nonfinite_parameter(model: nn.Module) -> str | None:
    """The name of the first parameter of ``model`` holding NaN/inf, or ``None`` (such weights are never saved)."""
    return next((name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())), None)


class StopOnSigint:
    """First Ctrl-C: finish the current step, then stop with a checkpoint. Second: stop at once.

    A context manager; ``requested`` turns true at the first SIGINT (main thread only).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        log.warning("Ctrl-C: stopping after this step and saving a checkpoint (Ctrl-C again to abort now)")

    def __enter__(self) -> StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None and signal.getsignal(signal.SIGINT) == self._handle:
            signal.signal(signal.SIGINT, self._previous)
