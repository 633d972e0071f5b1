"""``stnkit list``: the names a user can pass (tasks, models, families, digits), one per row.

Nothing heavy happens without ``--params``: no model is built and no data is loaded; the paper's
numbers come from the tasks (:attr:`stnkit.experiments.tasks.Task.paper`).
"""

from __future__ import annotations

from typing import Any

from .. import transforms
from . import data
from .models import count_parameters, create_model, describe_model, list_models
from .models.network import MODELS
from .tasks import TASKS, headline
from .train.build import default_downsample


def print_list(params: bool = False) -> None:
    """Prints every task, model, transform family and digit data set, one name at the start of each
    row (section headers start with ``#``); ``params`` adds each model's parameter counts."""
    print("# tasks (--task), on --digits " + " or ".join(data.list_sources()) + ":")
    tasks = {name: cls() for name, cls in TASKS.items()}  # no data is loaded
    for name, task in tasks.items():
        metric = headline(task)
        paper = ", ".join(
            f"{m}{' ' + t if t else ''} {v}".replace(" *", " (any family)") for (m, t), v in task.paper.items()
        )
        shape = "x".join(map(str, task.in_shape))
        print(
            f"{name:<10} {shape} -> {task.num_outputs} classes, {metric.name} {metric.unit} "
            f"({'lower' if metric.lower_is_better else 'higher'} is better) on the {task.scored_on} set; "
            f"{task.title}"
            + (f"; paper ({task.paper_source}, {getattr(task, 'paper_data', 'MNIST')}): {paper}" if paper else "")
        )
    print("\n# models (--model)" + ("" if params else "; parameter counts: stnkit list --params") + ":")
    setups = _parameter_setups(tasks) if params else {}
    if setups:
        print("# parameters with an affine ST, per input: " + "; ".join(setups))
    for name in list_models():
        counts = "".join(
            f"{_count_parameters(name, *setup):>12,}"
            if _takes(name, setup[0]) and _accepted(tasks, label, name)
            else f"{'-':>12}"
            for label, setup in setups.items()
        )
        print(f"{name:<10}{counts}  {describe_model(name).split(' Option')[0]}")
    print("\n# transform families (--transform):")
    for name in transforms.list_transforms():
        t = transforms.get(name)
        print(f"{name:<12} {t.num_params:>3} parameters, {t.ndim}-D")
    print("\n# digit data sets (--digits):")
    for name in data.list_sources():
        print(name)


def _parameter_setups(tasks: dict[str, Any]) -> dict[str, tuple[tuple[int, ...], int]]:
    """``{"r/p/e/none 1x28x28": (in_shape, outputs)}``: the distinct model sizes the tasks need."""
    groups: dict[tuple[tuple[int, ...], int], list[str]] = {}
    for name, task in tasks.items():
        groups.setdefault((tuple(task.in_shape), task.num_outputs), []).append(name)
    return {f"{'/'.join(names)} {'x'.join(map(str, shape))}": (shape, k) for (shape, k), names in groups.items()}


def _takes(model: str, in_shape: tuple[int, ...]) -> bool:
    """Whether ``model`` takes inputs of ``in_shape`` (reg-unet: moving and fixed, 2 channels; flat-cnn and
    st3d-cnn: volumes)."""
    factory = MODELS.get(model)
    channels = getattr(factory, "in_channels", None)
    return (channels is None or channels == in_shape[0]) and len(in_shape) == getattr(factory, "input_dims", 2) + 1


def _accepted(tasks: dict[str, Any], label: str, model: str) -> bool:
    """Whether a task of the setup ``label`` (``"r/p/e 1x28x28"``) trains ``model``."""
    return any(tasks[name].accepts(model) for name in label.split(" ")[0].split("/"))


def _count_parameters(model: str, in_shape: tuple[int, ...], num_classes: int) -> int:
    families = getattr(MODELS.get(model), "families", None)  # models tied to a family (coloc-st: attention)
    return count_parameters(
        create_model(
            model,
            in_shape=in_shape,
            num_classes=num_classes,
            transform=families[0] if families else "affine",
            downsample=default_downsample(model, in_shape),  # as `stnkit train` builds it
        )
    )
