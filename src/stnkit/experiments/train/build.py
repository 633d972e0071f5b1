"""What a config builds: its task and its model (shared by the trainer and by loading saved runs)."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import nn

from ..models import create_model
from ..models.attention import LOC_NORM_BUFFER, PARALLEL_ATTENTION
from ..tasks import Task, get_task
from .config import TrainConfig


def make_task(config: TrainConfig, *, data_dir: str | None = None) -> Task:
    """The config's task, its data not loaded yet (``data_dir`` overrides the config's)."""
    return get_task(config.task).from_config(config, data_dir=data_dir)


def build_model(config: TrainConfig, in_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Creates the config's model; the weight init is seeded by ``config.seed`` without touching
    the global RNG state (``torch.random.fork_rng``)."""
    downsample = config.downsample if config.downsample is not None else default_downsample(config.model, in_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return create_model(
            config.model,
            in_shape=in_shape,
            num_classes=num_classes,
            transform=config.transform,
            downsample=downsample,
            transform_options=config.transform_options or None,
            **config.model_options,
        )


def default_downsample(model: str, in_shape: tuple[int, ...]) -> bool:
    """The paper's 2x average pool after the transformers: on for a model with transformers and an
    input larger than 28x28 (RTS, TC, addition). The plain FCN and CNN see the whole input (42x42 on
    RTS), as the paper's baselines most likely did (docs/results.md, "CNN baseline")."""
    # st-cnn, 2xst-fcn, ic-st-cnn, ...; not the volume models (st3d-cnn, flat-cnn): both flatten unpooled
    return "st-" in model and max(in_shape[1:]) > 28


def saved_config(state: dict[str, Any], where: str = "run") -> TrainConfig:
    """The config a checkpoint was trained with, ``downsample`` resolved.

    Runs from before 0.3.0 left ``downsample`` unset and pooled every model's input larger than 28x28,
    the plain FCN and CNN included; they load and resume with that rule. Parallel-attention runs from
    before 0.4.0 have no normalisation of the localisation features (``loc_norm``, default
    ``"batch"`` since); one whose checkpoint holds none loads and resumes with ``loc_norm="none"``.
    """
    config = TrainConfig.from_dict(state["config"], where=where)
    if config.downsample is None:
        config = dataclasses.replace(config, downsample=max(tuple(state["in_shape"])[1:]) > 28)
    options = config.model_options or {}
    if config.model in PARALLEL_ATTENTION and "loc_norm" not in options and LOC_NORM_BUFFER not in state["model"]:
        config = dataclasses.replace(config, model_options={**options, "loc_norm": "none"})
    return config


def model_for(config: TrainConfig, task: Any) -> nn.Module:
    """:func:`build_model` at the task's input shape and output size."""
    return build_model(config, task.in_shape, task.num_outputs)
