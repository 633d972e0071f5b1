"""The planning half of ``stnkit grid``: cell sets, budgets, and what each run directory needs.

A **cell** is one (task, model, transform) of a paper table; the cell sets (:data:`CELL_SETS`) come
from the tasks' paper numbers (``Task.paper``, or ``Task.compared`` where the paper gives none). A
**budget** (:data:`BUDGETS`) says how long each run trains. :func:`plan` checks a runs directory and
says of each run whether it is done, resumes or starts afresh, before anything runs. Running the
trainings and the report is :mod:`stnkit.experiments.grid`'s part.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: The paper's tables: cell set -> tasks.
CELL_SETS = {"table1": ("r", "rts", "p", "e"), "tc": ("tc",), "table4": ("addition",), "3d": ("mnist3d",)}
#: The sets of ``all``: the paper's tables (``3d`` has no paper number; it runs when named).
PAPER_SETS = ("table1", "tc", "table4")
#: Settings a cell takes from its ``configs/`` file: what defines the model, never the recipe or length.
MODEL_KEYS = ("transform_options", "model_options", "task_options", "downsample")
#: Transform used where the paper names none (its TC numbers).
UNNAMED_TRANSFORM = "affine"
GRID_FILE = "grid.json"


@dataclass(frozen=True)
class Budget:
    """How long each run trains: epochs, training / test images (``None``: all) and batch size."""

    epochs: int
    limit: int | None
    test_limit: int | None
    batch_size: int = 256


#: Named budgets. ``tiny``: smoke tests. ``cpu``: the whole set (table1, tc, table4) in one working
#: session of a 2-core CPU, 1 thread per run (docs/results.md gives each cell's CPU time).
#: ``gpu``: full data, longer.
BUDGETS = {
    "tiny": Budget(epochs=1, limit=256, test_limit=256, batch_size=64),
    "cpu": Budget(epochs=3, limit=None, test_limit=None),
    "gpu": Budget(epochs=20, limit=None, test_limit=None),
}


@dataclass(frozen=True)
class Cell:
    """One cell of a paper table: ``task``, ``model`` and ``transform`` (``None`` without an ST)."""

    task: str
    model: str
    transform: str | None

    @property
    def name(self) -> str:
        """``rts_st-cnn_affine``, ``rts_cnn``: the cell's folder and its name on the command line."""
        return "_".join(p for p in (self.task, self.model, self.transform) if p)


def _configs_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "configs"  # the checkout's configs/ (absent when installed)


def config_settings(configs: Path | None = None) -> dict[Cell, dict[str, Any]]:
    """The model-defining settings (:data:`MODEL_KEYS`) of every ``configs/*.json``, by cell."""
    from .viz.paper_results import has_transformer

    found: dict[Cell, dict[str, Any]] = {}
    folder = _configs_dir() if configs is None else configs
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not ours to judge; `stnkit train --config` reports it
        if not isinstance(data, dict) or "model" not in data or "task" not in data:
            continue
        model = data["model"]
        transform = data.get("transform", "affine") if has_transformer(model) else None
        found[Cell(data["task"], model, transform)] = {k: data[k] for k in MODEL_KEYS if k in data}
    return found


def cells_of(name: str) -> list[Cell]:
    """The cells of a named set (:data:`CELL_SETS` or ``all``), in the paper's order.

    Raises:
        ValueError: for an unknown set name.
    """
    from .tasks import get_task
    from .tasks.digits import ANY_TRANSFORM

    if name == "all":
        return [c for n in PAPER_SETS for c in cells_of(n)]
    if name not in CELL_SETS:
        raise ValueError(f"cell set: expected one of {', '.join([*CELL_SETS, 'all'])}, got {name!r}")
    return [
        Cell(task, model, UNNAMED_TRANSFORM if transform == ANY_TRANSFORM else transform)
        for task in CELL_SETS[name]
        for model, transform in get_task(task).paper or get_task(task).compared
    ]


def select(sets: Sequence[str], cells: Sequence[str] = (), models: Sequence[str] = ()) -> list[Cell]:
    """The cells of ``sets``, narrowed to the names in ``cells`` and the models in ``models`` if given.

    Raises:
        ValueError: naming an unknown set, cell or model.
    """
    chosen = list(dict.fromkeys(c for s in sets for c in cells_of(s)))
    by_name = {c.name: c for c in chosen}
    unknown = [n for n in cells if n not in by_name]
    if unknown:
        raise ValueError(
            f"--cells: unknown cell(s) {', '.join(unknown)} in {', '.join(sets)}; "
            f"expected names such as {', '.join(list(by_name)[:4])}"
        )
    present = {c.model for c in chosen}
    unknown = [m for m in models if m not in present]
    if unknown:
        raise ValueError(
            f"--models: unknown model(s) {', '.join(unknown)} in {', '.join(sets)}; "
            f"expected some of {', '.join(sorted(present))}"
        )
    return [c for c in chosen if (not cells or c.name in cells) and (not models or c.model in models)]


def resolve_budget(name: str, **overrides: int | None) -> Budget:
    """The named budget with ``epochs``/``limit``/``test_limit``/``batch_size`` overrides (``None``: keep).

    Raises:
        ValueError: for an unknown name or a value that is not a positive integer.
    """
    if name not in BUDGETS:
        raise ValueError(f"--budget: expected one of {', '.join(BUDGETS)}, got {name!r}")
    values = asdict(BUDGETS[name])
    for key, value in overrides.items():
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{key.replace('_', '-')}: expected a positive integer, got {value!r}")
        values[key] = value
    return Budget(**values)


@dataclass(frozen=True)
class Job:
    """One run of the grid: a cell, a seed, its run directory and whether it resumes."""

    cell: Cell
    seed: int
    path: Path
    state: str  # "done", "resume" or "fresh"


def run_state(path: Path) -> str:
    """``done`` (summary says completed), ``resume`` (a checkpoint) or ``fresh`` (missing or empty).

    Raises:
        ValueError: when ``path`` holds something other than an stnkit run.
    """
    if not path.exists():
        return "fresh"
    if not path.is_dir():
        raise ValueError(f"runs directory: expected {path} to be a run directory, got a file")
    try:
        summary = json.loads((path / "summary.json").read_text())
    except (OSError, ValueError):
        summary = {}
    if isinstance(summary, dict) and summary.get("completed") is True:
        return "done"
    if (path / "checkpoint.pt").is_file():
        return "resume"
    entries = sorted(p.name for p in path.iterdir())
    if entries and "config.json" not in entries:
        raise ValueError(
            f"runs directory: expected {path} to hold an stnkit run or nothing, got {', '.join(entries[:5])}"
        )
    return "fresh"  # empty, or a run that failed before its first checkpoint (train refuses or restarts it)


def plan(runs: Path, cells: Sequence[Cell], seeds: int, budget: Budget, budget_name: str) -> list[Job]:
    """Checks ``runs`` (missing, empty, or a grid of the same budget) and every run directory in it.

    Raises:
        ValueError: for a runs directory holding something else, another budget, or ``seeds < 1``.
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"--seeds: expected a positive integer, got {seeds!r}")
    if not cells:
        raise ValueError("cells: the selection is empty; widen --cells / --models")
    if runs.exists() and not runs.is_dir():
        raise ValueError(f"--runs: expected a directory, got the file {str(runs)!r}")
    if runs.is_dir() and any(runs.iterdir()):
        record = runs / GRID_FILE
        if not record.is_file():
            found = ", ".join(sorted(p.name for p in runs.iterdir())[:5])
            raise ValueError(
                f"--runs: expected an empty directory or one made by `stnkit grid` (with {GRID_FILE}), "
                f"got {str(runs)!r} holding {found}"
            )
        try:
            saved = json.loads(record.read_text())["budget"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"--runs: cannot read {record}: {err}") from None
        if saved != asdict(budget):
            raise ValueError(
                f"--budget: {str(runs)!r} was run at {saved}, got {asdict(budget)} ({budget_name}); "
                "a table mixes no budgets: give another --runs directory"
            )
    return [
        Job(c, s, runs / c.name / f"seed{s}", run_state(runs / c.name / f"seed{s}"))
        for c in cells
        for s in range(seeds)
    ]
