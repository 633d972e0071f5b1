"""Evaluation: a saved run on what its task is scored on, or on a user's ``.npz``; loading saved runs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from ..tasks import classification_error
from . import checkpoint as ckpt
from .build import build_model, make_task, saved_config
from .config import TrainConfig


def evaluate(
    model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device | str | None = None
) -> dict[str, Any]:
    """Classification error of ``model`` over ``batches`` of ``(x (n, C, H, W), y (n,))``.

    Returns:
        ``{"error": %, "accuracy": %, "n": images}`` (error + accuracy = 100); see
        :func:`stnkit.experiments.tasks.classification_error`, which this calls.
    """
    return classification_error(model, batches, device)


def load_run(path: str | Path) -> tuple[nn.Module, TrainConfig]:
    """Loads a run's model (eval mode, CPU) from a run directory or a checkpoint file.

    Returns:
        ``(model, config)``; the model has ``in_shape`` and ``spatial_transformers``.
    """
    state = ckpt.load_checkpoint(path)
    config = saved_config(state, where=f"run {path}")
    model = build_model(config, tuple(state["in_shape"]), int(state["num_classes"]))
    model.load_state_dict(state["model"])
    return model.eval(), config


def _batches(x: Tensor, y: Tensor, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    for i in range(0, len(x), batch_size):
        yield x[i : i + batch_size], y[i : i + batch_size]


def evaluate_run(
    path: str | Path, *, npz: str | Path | None = None, data_dir: str | None = None, batch_size: int = 1000
) -> dict[str, Any]:
    """The task's metrics of a saved run on what the task is scored on (its fixed test set), or on
    the images of a user's ``.npz`` (classification tasks).

    Args:
        path: Run directory or checkpoint file.
        npz: File with ``images`` (N, H, W) or (N, C, H, W) uint8 and ``labels`` (N,); the images
            are fitted to the model's input size (``stnkit.experiments.data.fit_to_size``).
        data_dir: Where the digits are, if not where the run found them.
        batch_size: Evaluation batch size.

    Returns:
        The task's metrics (``{"error", "accuracy", "n"}`` for the digit tasks) plus ``"on"``
        (what was evaluated).
    """
    model, config = load_run(path)
    task = make_task(config, data_dir=data_dir)
    if npz is not None:
        from .. import data

        c, h, w = cast("tuple[int, int, int]", model.in_shape)
        images, labels = data.load_npz(npz)
        images = data.fit_to_size(images, (h, w), c)
        num_classes = _num_classes(model)
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"labels: this model predicts classes 0..{num_classes - 1}; {npz} has labels "
                f"{int(labels.min())}..{int(labels.max())}"
            )
        result = task.evaluate(model, _batches(images, labels, batch_size))
        return {**result, "on": str(npz)}
    result = task.evaluate(model, task.eval_data().batches(0, batch_size))
    return {**result, "on": f"{config.digits} {config.task} {task.scored_on} set"}


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features
