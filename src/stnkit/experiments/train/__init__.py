"""Training: one config dataclass, one trainer with callbacks, checkpoints, DDP, evaluation.

Example:
    >>> from stnkit.experiments.train import TrainConfig, train          # doctest: +SKIP
    >>> summary = train(TrainConfig(model="st-cnn", task="rts", epochs=2), "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

from .build import build_model, make_task
from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .evaluate import evaluate, evaluate_run, load_run
from .progress import ProgressBar
from .state import EpochTotals, TrainState
from .trainer import Trainer, TrainingDiverged, train

__all__ = [
    "Callback",
    "EpochTotals",
    "ProgressBar",
    "TrainState",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "build_model",
    "evaluate",
    "evaluate_run",
    "load_checkpoint",
    "load_config",
    "load_run",
    "make_task",
    "save_checkpoint",
    "train",
]
