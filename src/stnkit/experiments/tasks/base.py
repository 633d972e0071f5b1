"""What an experiment ("task") declares, and the registry of tasks.

A :class:`Task` is everything the trainer, ``stnkit eval``, ``show``, ``report`` and ``list`` need to
know about one experiment of the paper, so that none of them is hard-wired to one kind of data:

* its data: :meth:`Task.train_data` (fresh every epoch; randomness only through explicit
  generators, each sample's draw a function of ``(seed, epoch, index)``) and :meth:`Task.eval_data`
  (what it is scored on: a fixed test set, or the training images themselves where the paper
  scores that way, see :attr:`Task.scored_on`); both serve ``batches(epoch, batch_size, rank,
  world_size)`` of tensor tuples;
* the models it accepts (:meth:`Task.accepts`) and the model's input and output sizes;
* a training step (:meth:`Task.step`: a batch in, a summed loss and metric sums out, so triplet
  losses over image pairs or unlabelled registration fit as well as cross-entropy) and an
  evaluation (:meth:`Task.evaluate`);
* its metrics (:class:`Metric`: name and whether lower is better);
* a default training recipe (:attr:`Task.recipe`: settings layered between the defaults and a
  config file);
* what the pictures show (:attr:`Task.pictures`, :meth:`Task.images`);
* the paper's reference numbers (:attr:`Task.paper`, :meth:`Task.paper_value`).

Tasks register by class (the registry name is the class's ``name``); see :mod:`.digits`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import torch
from torch import Tensor, nn

from ..._registry import Registry

Batch = tuple[Tensor, ...]


@dataclass(frozen=True)
class Metric:
    """One number a task reports, in percent or plain units.

    Attributes:
        name: Column name (``"error"`` gives ``train_error`` / ``test_error`` in ``metrics.jsonl``).
        lower_is_better: Whether a smaller value is a better model.
        unit: ``"%"`` or ``""``.
    """

    name: str
    lower_is_better: bool = True
    unit: str = "%"


@dataclass
class StepResult:
    """What one training step of a task gives the trainer.

    Attributes:
        loss: Scalar loss SUMMED over the batch (differentiable); the trainer divides by the global
            number of samples, so DDP ranks with unequal shares average correctly.
        count: Number of samples in the batch.
        sums: Per-batch sums the task turns into training metrics (:meth:`Task.train_metrics`),
            e.g. ``{"correct": 57.0}``; summed over batches and ranks by the trainer.
    """

    loss: Tensor
    count: int
    sums: dict[str, float] = field(default_factory=dict)


class EpochData(Protocol):
    """What :meth:`Task.train_data` and :meth:`Task.eval_data` return."""

    def __len__(self) -> int: ...

    def batches(self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Iterator[Batch]: ...


class Task(ABC):
    """One experiment: data, model sizes, training step, evaluation, metrics, recipe, pictures, paper.

    Args:
        digits: The source images (``mnist`` or ``fashion-mnist`` for the digit tasks).
        data_dir, download: Where the source images are (see :func:`stnkit.experiments.data.load_digits`).
        seed: Training seed (the order and draws of every epoch derive from it).
        limit: Keep the first ``limit`` training samples.
        test_limit: Keep the first ``test_limit`` evaluation samples (default: ``limit``).
    """

    #: Registry name (``--task``).
    name: ClassVar[str]
    #: Human name, e.g. ``"RTS: rotated, translated, scaled"``.
    title: ClassVar[str] = ""
    #: The metrics, the headline first.
    metrics: ClassVar[tuple[Metric, ...]] = ()
    #: ``"test"``: a fixed test set; ``"train"``: the training images themselves (co-localisation).
    scored_on: ClassVar[str] = "test"
    #: Names of the models the task accepts.
    models: ClassVar[tuple[str, ...]] = ()
    #: Default training recipe: settings applied over the defaults, under a config file and options.
    recipe: ClassVar[dict[str, Any]] = {}
    #: What ``stnkit show`` and the training animation draw.
    pictures: ClassVar[str] = ""
    #: The paper's headline metric: ``{(model, transform or None): value}``.
    paper: ClassVar[dict[tuple[str, str | None], float]] = {}
    #: Where :attr:`paper` comes from (table or section of the paper).
    paper_source: ClassVar[str] = ""
    #: ``(model, transform)`` cells ``stnkit grid`` trains where :attr:`paper` is empty (``mnist3d``).
    compared: ClassVar[tuple[tuple[str, str | None], ...]] = ()
    #: Names the task accepts in the config's ``task_options`` (none by default).
    options: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        digits: str = "mnist",
        data_dir: str | None = None,
        download: bool = False,
        seed: int = 0,
        limit: int | None = None,
        test_limit: int | None = None,
    ) -> None:
        self.digits, self.data_dir, self.download = digits, data_dir, download
        self.seed, self.limit, self.test_limit = seed, limit, test_limit

    @classmethod
    def from_config(cls, config: Any, *, data_dir: str | None = None) -> Task:
        """The task of a :class:`~stnkit.experiments.train.TrainConfig` (``data_dir`` overrides its own),
        with its ``task_options`` (those the task declares in :attr:`options`)."""
        options = dict(getattr(config, "task_options", None) or {})
        unknown = sorted(set(options) - set(cls.options))
        if unknown:
            raise ValueError(
                f"task_options: task {cls.name!r} accepts {', '.join(cls.options) or 'no options'}; "
                f"got {', '.join(unknown)}"
            )
        return cls(
            digits=config.digits,
            data_dir=data_dir or config.data_dir,
            download=config.download,
            seed=config.seed,
            limit=config.limit,
            test_limit=config.test_limit,
            **options,
        )

    # -- what the model sees -------------------------------------------------------------------------
    @property
    @abstractmethod
    def in_shape(self) -> tuple[int, ...]:
        """``(C, H, W)`` of one model input (``(C, D, H, W)`` of a volume: ``mnist3d``)."""

    @property
    @abstractmethod
    def num_outputs(self) -> int:
        """Size of the model's output (classes for classification tasks)."""

    @classmethod
    def accepts(cls, model: str) -> bool:
        """Whether the task can train model ``model``."""
        return model in cls.models

    # -- data ------------------------------------------------------------------------------------
    @abstractmethod
    def train_data(self) -> EpochData:
        """The training data, served fresh every epoch (see the module docs)."""

    @abstractmethod
    def eval_data(self) -> EpochData:
        """What the task is scored on (:attr:`scored_on`)."""

    def data_info(self) -> dict[str, Any]:
        """Facts about the loaded data for ``summary.json`` (e.g. where it came from)."""
        return {}

    @staticmethod
    def images(batch: Batch) -> Tensor:
        """The model inputs of a batch ``(n, C, H, W)``, for pictures."""
        return batch[0]

    # -- training and evaluation ------------------------------------------------------------------
    @abstractmethod
    def step(self, model: nn.Module, batch: Batch) -> StepResult:
        """The loss (summed over the batch) and metric sums of ``model`` on one training batch."""

    @abstractmethod
    def train_metrics(self, sums: dict[str, float], count: float) -> dict[str, float]:
        """``{metric name: value}`` over an epoch from the summed :attr:`StepResult.sums`."""

    @abstractmethod
    def evaluate(
        self, model: nn.Module, batches: Iterable[Batch], device: torch.device | str | None = None
    ) -> dict[str, Any]:
        """``{metric name: value, ..., "n": samples}`` of ``model`` (eval mode) over ``batches``."""

    def prepare_model(self, model: nn.Module) -> None:  # noqa: B027 (an optional hook, empty by default)
        """Called by the trainer on a fresh model before training (not on resume): e.g. pretrains a
        frozen part (co-localisation's encoder). Default: nothing."""

    # -- the paper -----------------------------------------------------------------------------------
    @classmethod
    def paper_value(cls, model: str, transform: str | None, digits: str = "mnist") -> float | None:
        """The paper's headline metric for a model and transform, ``None`` where it has none."""
        return None


def headline(task: type[Task] | Task) -> Metric:
    """The first (headline) metric of a task."""
    return task.metrics[0]


#: The registry of tasks (``--task``); register with ``@register_task`` on a :class:`Task` subclass.
TASKS: Registry[type[Task]] = Registry("task")


def register_task(obj: Any = None, *, name: str | None = None) -> Any:
    """Registers a :class:`Task` subclass under its ``name`` attribute (or ``name``)."""
    return TASKS.register(obj, name=name)


def list_tasks() -> list[str]:
    """Names of every registered task, sorted."""
    return TASKS.names()


def get_task(name: str) -> type[Task]:
    """The :class:`Task` class registered as ``name``.

    Raises:
        ValueError: unknown name (the message lists the registered ones).
    """
    return TASKS.get(name, argument="task")
