"""``TrainConfig``: every setting of a training run, with its default, in one dataclass.

A config is built from defaults, then a JSON/TOML file (``configs/*.json``), then overrides (the
command line); :meth:`TrainConfig.validate` checks the result, and the resolved config is saved as
``config.json`` in the run directory. Help texts live in the field metadata (the CLI reads them).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
import warnings
from dataclasses import InitVar, dataclass, field
from pathlib import Path
from typing import Any

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("step", "cosine", "constant")
DEVICES = ("auto", "cpu", "cuda")
TASK_DEFAULT = "rts"

#: The message of the deprecated ``dataset`` setting (``--dataset``, config files, old runs' config.json).
DATASET_DEPRECATED = (
    "'dataset' is deprecated and now called 'task' (--task on the command line, \"task\" in "
    "config files); 'dataset' still works for now"
)


def warn_dataset_deprecated(stacklevel: int = 3) -> None:
    """Warns (``FutureWarning``, shown to users by default) that ``dataset`` is now ``task``."""
    warnings.warn(DATASET_DEPRECATED, FutureWarning, stacklevel=stacklevel)


def _f(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """A training run.

    The optimisation defaults learn within a few epochs on a CPU: Adam, lr 2e-3, a cosine decay to 0
    over the run, batch 256, no warm-up, the localisation nets at the base learning rate, 10 epochs
    (measured in docs/results.md, "Defaults"). The paper's recipe (SGD, lr 0.01 without momentum,
    divided by 10 every 50k of 150k iterations, batch 256) learns nothing at such lengths; it is one
    ``--config configs/table1_*.json`` away (those files pin every setting that differs)."""

    # what to train
    model: str = _f("st-cnn", "model name (stnkit list)")
    transform: str = _f("affine", "transform family of the spatial transformers")
    task: str = _f(TASK_DEFAULT, "task (experiment): r, rts, p, e, t, tc, addition, none (stnkit list)")
    digits: str = _f("mnist", "source digits: mnist or fashion-mnist")
    downsample: bool | None = _f(
        None,
        "2x average pool after the ST (default: on for ST models on inputs "
        "larger than 28x28; the plain FCN/CNN see the whole input)",
    )
    transform_options: dict = _f({}, "transform family options as JSON, e.g. '{\"grid_size\": 4}'")
    model_options: dict = _f({}, "model options as JSON, e.g. '{\"channels\": [32, 64]}'")
    task_options: dict = _f({}, "task options as JSON, e.g. '{\"classes\": [3]}' (coloc)")
    # data
    data_dir: str | None = _f(None, "directory with the IDX files (default: $STNKIT_DATA_DIR, cache, embedded sample)")
    download: bool = _f(False, "download the digits into the cache if missing")
    limit: int | None = _f(None, "use only the first N training images (quick runs)")
    test_limit: int | None = _f(None, "use only the first N test images (default: --limit)")
    # optimisation
    epochs: int = _f(10, "number of epochs")
    batch_size: int = _f(256, "global batch size (split over DDP ranks)")
    optimizer: str = _f("adam", "adam (default) or sgd (the paper's, see configs/)")
    lr: float = _f(2e-3, "base learning rate (the paper's SGD: 0.01)")
    momentum: float = _f(0.0, "SGD momentum (the paper states none); ignored by adam")
    weight_decay: float = _f(0.0, "weight decay")
    schedule: str = _f("cosine", "learning-rate schedule: cosine (default, to 0 at the end), step (paper), constant")
    lr_step: int | None = _f(None, "step schedule: iterations between drops (default: a third of the run)")
    lr_gamma: float = _f(0.1, "step schedule: factor at each drop")
    warmup_iterations: int = _f(0, "linear learning-rate warm-up, in iterations")
    loc_lr_mult: float = _f(1.0, "learning-rate multiplier of the localisation nets")
    grad_clip: float | None = _f(None, "clip the gradient norm to this value")
    seed: int = _f(0, "seed of the weight init, the shuffling and the training distortions")
    # machinery
    device: str = _f("auto", "auto, cpu or cuda")
    threads: int | None = _f(None, "torch CPU threads per process")
    eval_batch_size: int = _f(1000, "batch size of the test-set evaluation")
    compile: bool = _f(
        False,
        "torch.compile the model for training (does not help on a 2-core Zen 4 CPU, "
        "1 thread: a compiled ST-CNN RTS epoch took 1.9x the CPU time of an eager one, "
        "plus the compile; docs/performance.md)",
    )
    amp: bool = _f(
        False,
        "bfloat16 autocast for training (CPU: where the processor supports bfloat16; CUDA); "
        "spatial transformers still warp in float32 (2-core Zen 4 CPU, 1 thread: ST-CNN RTS "
        "epoch 1.20x faster in CPU time, same test error; docs/performance.md)",
    )
    channels_last: bool = _f(
        False,
        "channels-last memory format for the model and its inputs (2-core Zen 4 "
        "CPU, 1 thread: ST-CNN RTS epoch 1.06x faster in CPU time, the whole run "
        "1.25x; docs/performance.md)",
    )
    num_workers: int = _f(
        0,
        "DataLoader worker processes per rank for file-based data (0: load in the main "
        "process; the digit tasks draw their batches in place and ignore it)",
    )
    checkpoint_every: int | None = _f(
        None,
        "also save a checkpoint every N iterations, mid-epoch (a resumed run "
        "continues at the same batch; default: at each epoch's end only)",
    )
    # deprecated: the old name of `task` (accepted, with a FutureWarning)
    dataset: InitVar[str | None] = None

    def __post_init__(self, dataset: str | None) -> None:
        if dataset is not None and dataset != self.task:  # equal: dataclasses.replace() passing it back
            warn_dataset_deprecated(stacklevel=4)
            if self.task not in (TASK_DEFAULT, dataset):
                raise ValueError(
                    f"dataset: the deprecated name of task, given as {dataset!r} while task is "
                    f"{self.task!r}; give task only"
                )
            self.task = dataset

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any], *, where: str = "config") -> TrainConfig:
        """Builds a config from ``values`` (unknown keys are refused); types are checked."""
        if not isinstance(values, dict):
            raise TypeError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
        if "dataset" in values:  # the old name of `task` (config files, --dataset, runs before 0.2)
            values = dict(values)
            dataset = values.pop("dataset")
            warn_dataset_deprecated()
            if values.get("task", dataset) != dataset:
                raise ValueError(
                    f"{where}: dataset: the deprecated name of task, given as {dataset!r} while "
                    f"task is {values['task']!r}; give task only"
                )
            values["task"] = dataset
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(names))
        if unknown:
            raise ValueError(f"{where}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(names)}")
        return cls(**{k: _coerce(k, v, where) for k, v in values.items()})

    def replace(self, **overrides: Any) -> TrainConfig:
        """A copy with ``overrides`` applied (checked like :meth:`from_dict`)."""
        return TrainConfig.from_dict({**self.to_dict(), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    # -- checks -----------------------------------------------------------------------------------
    def validate(self) -> TrainConfig:
        """Checks names against the registries and numbers against their ranges.

        Raises:
            ValueError: naming the setting, what was expected and what was given.
        """
        from ...transforms import list_transforms
        from .. import data
        from ..models import list_models
        from ..tasks import get_task, list_tasks

        _choice("model", self.model, list_models())
        _choice("transform", self.transform, list_transforms())
        _choice("task", self.task, list_tasks())
        task = get_task(self.task)
        if not task.accepts(self.model):
            raise ValueError(f"model: task {self.task!r} accepts {', '.join(task.models)}; got {self.model!r}")
        unknown = sorted(set(self.task_options) - set(task.options))
        if unknown:
            raise ValueError(
                f"task_options: task {self.task!r} accepts {', '.join(task.options) or 'no options'}; "
                f"got {', '.join(unknown)}"
            )
        _choice("digits", self.digits, data.list_sources())
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("schedule", self.schedule, SCHEDULES)
        _choice("device", self.device, DEVICES)
        for name in ("epochs", "batch_size", "eval_batch_size"):
            _at_least(name, getattr(self, name), 1)
        for name in ("limit", "test_limit", "lr_step", "threads", "checkpoint_every"):
            if getattr(self, name) is not None:
                _at_least(name, getattr(self, name), 1)
        _at_least("warmup_iterations", self.warmup_iterations, 0)
        _at_least("num_workers", self.num_workers, 0)
        _at_least("seed", self.seed, 0)
        _positive("lr", self.lr)
        _positive("loc_lr_mult", self.loc_lr_mult, allow_zero=True)
        _positive("lr_gamma", self.lr_gamma)
        _positive("momentum", self.momentum, allow_zero=True)
        _positive("weight_decay", self.weight_decay, allow_zero=True)
        if self.grad_clip is not None:
            _positive("grad_clip", self.grad_clip)
        if self.momentum >= 1:
            raise ValueError(f"momentum: expected a number in [0, 1), got {self.momentum!r}")
        return self


def _dataset(self: TrainConfig) -> str:
    """Deprecated: the config's :attr:`task` (read quietly: ``dataclasses.replace`` reads it too)."""
    return self.task


TrainConfig.dataset = property(_dataset)  # type: ignore[attr-defined]  # read access for old code


def with_task_recipe(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` layered over the default recipe of their task (``Task.recipe``): defaults < the
    task's recipe < a config file < options. Unknown task names are left for :meth:`TrainConfig.validate`."""
    from ..tasks import get_task, list_tasks

    name = values.get("task", values.get("dataset", TASK_DEFAULT))
    recipe = get_task(name).recipe if name in list_tasks() else {}
    return {**recipe, **values}


def load_config(path: str | Path) -> TrainConfig:
    """Reads a ``.json`` or ``.toml`` config file (settings not in the file keep their defaults)."""
    return TrainConfig.from_dict(read_config_file(path), where=f"config {path}")


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The settings written in a ``.json`` or ``.toml`` config file (checked, without defaults)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config: no such file {str(path)!r}")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib

            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except ValueError as err:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise ValueError(f"config: {path} is not valid {path.suffix.lstrip('.').upper() or 'JSON'}: {err}") from None
    TrainConfig.from_dict(values, where=f"config {path}")  # checks names and types
    return values


def field_types() -> dict[str, Any]:
    """``{setting: type hint}`` of :class:`TrainConfig` (used by the CLI to build its options)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _coerce(name: str, value: Any, where: str) -> Any:
    hint = field_types()[name]
    args = typing.get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if args else hint
    if value is None:
        if optional:
            return None
        raise ValueError(f"{where}: {name}: expected a {base.__name__}, got None")
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, base) or (base is int and isinstance(value, bool)):
        raise ValueError(f"{where}: {name}: expected a {base.__name__}, got {value!r} ({type(value).__name__})")
    return value


def _choice(name: str, value: str, options: list[str] | tuple[str, ...]) -> None:
    if value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(options)}; got {value!r}")


def _at_least(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name}: expected a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
