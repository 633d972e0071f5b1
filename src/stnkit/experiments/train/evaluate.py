"""Evaluation: error of a model on batches, and of a saved run on its test set or a user's ``.npz``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from . import checkpoint as ckpt
from .config import TrainConfig


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
             device: torch.device | str | None = None) -> dict[str, Any]:
    """Classification error of ``model`` over ``batches`` of ``(x (n, C, H, W), y (n,))``.

    Returns:
        ``{"error": %, "accuracy": %, "n": images}`` (error + accuracy = 100).
    """
    was_training = model.training
    model.eval()
    correct = n = 0
    try:
        for x, y in batches:
            logits = model(x.to(device) if device is not None else x)  # (n, classes)
            correct += int((logits.argmax(1).cpu() == y.cpu()).sum())
            n += len(y)
    finally:
        model.train(was_training)
    if n == 0:
        raise ValueError("batches: expected at least one image to evaluate, got none")
    return {"error": 100.0 * (n - correct) / n, "accuracy": 100.0 * correct / n, "n": n}


def load_run(path: str | Path) -> tuple[nn.Module, TrainConfig]:
    """Loads a run's model (eval mode, CPU) from a run directory or a checkpoint file.

    Returns:
        ``(model, config)``; the model has ``in_shape`` and ``spatial_transformers``.
    """
    from .trainer import build_model

    state = ckpt.load_checkpoint(path)
    config = TrainConfig.from_dict(state["config"], where=f"run {path}")
    model = build_model(config, tuple(state["in_shape"]), int(state["num_classes"]))
    model.load_state_dict(state["model"])
    return model.eval(), config


def _batches(x: Tensor, y: Tensor, batch_size: int) -> Iterable[tuple[Tensor, Tensor]]:
    for i in range(0, len(x), batch_size):
        yield x[i:i + batch_size], y[i:i + batch_size]


def evaluate_run(path: str | Path, *, npz: str | Path | None = None, data_dir: str | None = None,
                 batch_size: int = 1000) -> dict[str, Any]:
    """Error % of a saved run on its fixed test set, or on the images of a user's ``.npz``.

    Args:
        path: Run directory or checkpoint file.
        npz: File with ``images`` (N, H, W) or (N, C, H, W) uint8 and ``labels`` (N,); the images
            are fitted to the model's input size (``stnkit.experiments.data.fit_to_size``).
        data_dir: Where the digits are, if not where the run found them.
        batch_size: Evaluation batch size.

    Returns:
        ``{"error", "accuracy", "n"}`` plus ``"on"`` (what was evaluated).
    """
    from .. import data

    model, config = load_run(path)
    c, h, w = model.in_shape
    if npz is not None:
        images, labels = data.load_npz(npz)
        images = data.fit_to_size(images, (h, w), c)
        num_classes = _num_classes(model)
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"labels: this model predicts classes 0..{num_classes - 1}; {npz} has labels "
                             f"{int(labels.min())}..{int(labels.max())}")
        result = evaluate(model, _batches(images, labels, batch_size))
        return {**result, "on": str(npz)}
    test = run_test_set(config, data_dir)
    result = evaluate(model, test.batches(0, batch_size))
    return {**result, "on": f"{config.digits} {config.dataset} test set"}


def run_test_set(config: TrainConfig, data_dir: str | None = None) -> Any:
    """The fixed test set of a run (a ``DistortedDigits``), from ``data_dir`` or where the run found it."""
    from .. import data

    return data.DistortedDigits(config.dataset, "test", name=config.digits, data_dir=data_dir or config.data_dir,
                                seed=config.seed, limit=config.test_limit or config.limit)


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    return last.out_features
