"""Optimizer with a separate learning rate for the localisation nets, and the LR schedule.

The schedule is a pure function of the iteration, so a resumed run needs only the iteration count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..models import localisation_parameters
from .config import TrainConfig


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD or Adam over two parameter groups: the classifier (``lr``) and the spatial
    transformers' localisation nets (``lr * loc_lr_mult``). Each group keeps its ``base_lr``."""
    loc_ids = {id(p) for p in localisation_parameters(model)}
    rest = [p for p in model.parameters() if id(p) not in loc_ids]
    loc = [p for p in model.parameters() if id(p) in loc_ids]
    groups = [{"params": rest, "lr": config.lr, "base_lr": config.lr, "name": "classifier"}]
    if loc:
        lr = config.lr * config.loc_lr_mult
        groups.append({"params": loc, "lr": lr, "base_lr": lr, "name": "localisation"})
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    return torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(config: TrainConfig, iteration: int, total: int) -> float:
    """Multiplier of the base learning rates at ``iteration`` (0-based) of ``total``.

    ``step``: ``lr_gamma ** (iteration // lr_step)`` (paper: /10 every 50k of 150k iterations, so
    ``lr_step`` defaults to a third of the run); ``cosine``: half a cosine from 1 to 0;
    ``constant``: 1. A linear warm-up over ``warmup_iterations`` multiplies any of them.
    """
    if config.schedule == "step":
        step = config.lr_step or max(1, math.ceil(total / 3))
        factor = config.lr_gamma ** (iteration // step)
    elif config.schedule == "cosine":
        factor = 0.5 * (1.0 + math.cos(math.pi * min(iteration, total) / max(total, 1)))
    else:
        factor = 1.0
    if iteration < config.warmup_iterations:
        factor *= (iteration + 1) / config.warmup_iterations
    return factor


def set_lr(optimizer: torch.optim.Optimizer, factor: float) -> float:
    """Sets every group's lr to ``base_lr * factor``; returns the first group's lr."""
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
    return optimizer.param_groups[0]["lr"]
