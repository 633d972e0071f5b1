"""Training: one config dataclass, one trainer with callbacks, checkpoints, DDP, evaluation.

Example:
    >>> from stnkit.experiments.train import TrainConfig, train          # doctest: +SKIP
    >>> summary = train(TrainConfig(model="st-cnn", dataset="rts", epochs=2), "runs/demo")  # doctest: +SKIP
"""

from __future__ import annotations

from .callbacks import Callback
from .checkpoint import load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .evaluate import evaluate, evaluate_run, load_run
from .trainer import Trainer, TrainingDiverged, build_model, train

__all__ = [
    "Callback",
    "TrainConfig",
    "Trainer",
    "TrainingDiverged",
    "build_model",
    "evaluate",
    "evaluate_run",
    "load_checkpoint",
    "load_config",
    "load_run",
    "save_checkpoint",
    "train",
]
