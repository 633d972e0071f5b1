"""Tasks: the experiments of the paper as plug-ins (see :mod:`.base` for what a task declares).

``base`` holds the :class:`Task` interface and the registry (the leaf every task module imports);
this ``__init__`` imports the task modules, which register themselves.

Example:
    >>> from stnkit.experiments.tasks import list_tasks
    >>> list_tasks()  # doctest: +NORMALIZE_WHITESPACE
    ['addition', 'coloc', 'coloc-tc', 'cub', 'e', 'mnist-sequences', 'mnist-sequences-128', 'mnist3d', 'none', 'p',
     'parts', 'r', 'registration', 'rts', 'svhn', 'svhn-128', 't', 'tc']
"""

from __future__ import annotations

# Registers coloc, coloc-tc; cub; r ... none; parts; registration; mnist-sequences(-128), svhn(-128); mnist3d.
from . import coloc, cub, digits, parts, registration, sequences, svhn, volumes  # noqa: F401
from .base import TASKS, EpochData, Metric, StepResult, Task, get_task, headline, list_tasks, register_task
from .digits import DigitTask, classification_error

__all__ = [
    "DigitTask",
    "EpochData",
    "Metric",
    "StepResult",
    "TASKS",
    "Task",
    "classification_error",
    "get_task",
    "headline",
    "list_tasks",
    "register_task",
]
