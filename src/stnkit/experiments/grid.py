"""``stnkit grid``: trains a named set of the paper's cells, resumably, N processes at once, then reports.

A **cell** is one (task, model, transform) of a paper table; its run for seed ``k`` lives in
``RUNS/<cell>/seed<k>`` (a run directory of ``stnkit train``, see ``train/rundir.py``). Cells come
from the tasks' paper numbers (``Task.paper``): ``table1`` (R, RTS, P, E x FCN, CNN, ST-FCN and
ST-CNN with affine, projective and TPS), ``tc`` (the TC row; the paper names no transform, affine is
used), ``table4`` (addition, with its 2xST models) and ``3d`` (``mnist3d``: ``flat-cnn`` against
``st3d-cnn``; the paper gives no number, the task's ``compared`` names the cells); ``all`` is the union
of the paper's tables (``3d`` left out). Each cell takes the
settings that define its model (``transform_options``, ...) from ``configs/`` where a file exists; the
optimisation is the defaults' (which learn at short lengths) and the length is the **budget**'s.

Resumable: a run whose ``summary.json`` says ``completed`` is skipped, one with a checkpoint is
continued with ``--resume``, the others start afresh. ``RUNS/grid.json`` records the budget; a runs
directory made with another budget, or holding anything else, is refused before anything runs.
Each run is a ``stnkit train`` subprocess (log in ``RUNS/logs/``) with ``--threads``, so ``jobs``
processes share the cores (or one GPU). The end is ``stnkit report`` over every run: ``RUNS/report.md``.

The cells, budgets and the plan (what each run directory needs) are
:mod:`stnkit.experiments.grid_plan`'s; this module runs the trainings, then the report, and is the command.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .._io import atomic_write
from .grid_plan import (
    BUDGETS,
    CELL_SETS,
    GRID_FILE,
    MODEL_KEYS,
    PAPER_SETS,
    UNNAMED_TRANSFORM,
    Budget,
    Cell,
    Job,
    cells_of,
    config_settings,
    plan,
    resolve_budget,
    run_state,
    select,
)

__all__ = [
    "BUDGETS",
    "CELL_SETS",
    "CPU_FILE",
    "GRID_FILE",
    "LOGS",
    "MODEL_KEYS",
    "PAPER_SETS",
    "UNNAMED_TRANSFORM",
    "Budget",
    "Cell",
    "GridInterrupted",
    "Job",
    "add_command",
    "cells_of",
    "cmd_grid",
    "config_settings",
    "execute",
    "plan",
    "resolve_budget",
    "run_grid",
    "run_state",
    "select",
    "train_args",
]

CPU_FILE = "cpu.json"  # in LOGS: CPU seconds (user + sys) of each run's training processes, over all sessions
LOGS = "logs"


class GridInterrupted(KeyboardInterrupt):
    """Ctrl-C during a grid; the command's one line says how to go on."""

    note = "; the trainings saved checkpoints: run the same command again to resume them"


def _flags(settings: dict[str, Any]) -> list[str]:
    """``stnkit train`` options for ``settings`` (``None`` left out)."""
    out: list[str] = []
    for key, value in settings.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        else:
            out += [flag, json.dumps(value) if isinstance(value, (dict, list)) else str(value)]
    return out


def train_args(
    job: Job, budget: Budget, threads: int, extra: dict[str, Any], configs: dict[Cell, dict[str, Any]]
) -> list[str]:
    """The ``stnkit train`` arguments of ``job``: resume, or the cell, its config settings, the budget."""
    common = ["--out", str(job.path), "--no-progress", "--no-animation", "--threads", str(threads)]
    if job.state == "resume":
        return [*common, "--resume"]
    cell = job.cell
    settings = {
        "task": cell.task,
        "model": cell.model,
        "transform": cell.transform,
        **configs.get(cell, {}),
        **asdict(budget),
        "seed": job.seed,
        **extra,
    }
    return [*common, *_flags(settings)]


def _add_cpu(path: Path, key: str, seconds: float) -> None:
    """Adds ``seconds`` to ``key`` in the JSON file ``path`` (CPU time of a run over all sessions)."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    table[key] = round(table.get(key, 0.0) + seconds, 2)
    atomic_write(path, json.dumps(table, indent=2, sort_keys=True).encode())


def execute(
    jobs: Sequence[Job],
    args: Sequence[Sequence[str]],
    logs: Path,
    parallel: int,
    command: Sequence[str] | None = None,
    poll_s: float = 0.1,
) -> dict[Path, int]:
    """Runs ``command + args[i]`` for every job, ``parallel`` at once; output to ``logs/<cell>_seed<k>.log``.

    The trainings run in their own sessions, so a terminal's Ctrl-C reaches only this process, which
    passes one SIGINT to each (each saves a checkpoint), waits for them and raises :class:`GridInterrupted`.

    Returns:
        The exit status of each job's run directory (its CPU time is added to ``logs/cpu.json``).
    """
    command = list(command or [sys.executable, "-m", "stnkit", "train"])
    logs.mkdir(parents=True, exist_ok=True)
    pending = list(zip(jobs, args, strict=True))
    running: list[tuple[Job, subprocess.Popen, Any]] = []
    status: dict[Path, int] = {}
    try:
        while pending or running:
            while pending and len(running) < parallel:
                job, argv = pending.pop(0)
                log = open(logs / f"{job.cell.name}_seed{job.seed}.log", "ab")
                running.append(
                    (
                        job,
                        subprocess.Popen(
                            [*command, *argv], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                        ),
                        log,
                    )
                )
            for entry in list(running):
                job, proc, log = entry
                pid, code, usage = os.wait4(proc.pid, os.WNOHANG)  # the exit status and this child's CPU time
                if pid:
                    proc.returncode = status[job.path] = os.waitstatus_to_exitcode(code)
                    _add_cpu(logs / CPU_FILE, f"{job.cell.name}/seed{job.seed}", usage.ru_utime + usage.ru_stime)
                    log.close()
                    running.remove(entry)
            time.sleep(poll_s if running else 0)
    except KeyboardInterrupt:
        for _, proc, _ in running:
            proc.send_signal(signal.SIGINT)
        for _, proc, log in running:
            proc.wait()
            log.close()
        raise GridInterrupted() from None
    return status


def run_grid(
    runs: str | Path,
    sets: Sequence[str],
    *,
    budget: str = "tiny",
    seeds: int = 1,
    jobs: int = 1,
    threads: int | None = None,
    cells: Sequence[str] = (),
    models: Sequence[str] = (),
    overrides: dict[str, int | None] | None = None,
    extra: dict[str, Any] | None = None,
    command: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Plans, trains what is left and writes ``RUNS/report.md``; every check happens before any run.

    Args:
        runs: The grid's directory.
        sets: Cell sets (:func:`cells_of`).
        budget: A name of :data:`BUDGETS`; ``overrides`` replace its fields.
        seeds: Runs per cell (seeds ``0 .. seeds-1``).
        jobs: Trainings at once.
        threads: Torch threads per training (default: the CPU count // ``jobs``, at least 1).
        cells, models: Keep only these cell names / models.
        extra: Further ``stnkit train`` settings for fresh runs (``data_dir``, ``device``).
        command: The training command (default ``python -m stnkit train``).

    Returns:
        ``{"jobs": [Job], "status": {path: exit status}, "failed": [Job], "report": Path}``.

    Raises:
        ValueError: for bad input, before anything runs.
    """
    for name, value in (("jobs", jobs), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"--{name}: expected a positive integer, got {value!r}")
    chosen = select(sets, cells, models)
    spec = resolve_budget(budget, **(overrides or {}))
    runs = Path(runs)
    todo = plan(runs, chosen, seeds, spec, budget)
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    configs = config_settings()
    runs.mkdir(parents=True, exist_ok=True)
    atomic_write(runs / GRID_FILE, json.dumps({"budget": asdict(spec), "name": budget}, indent=2).encode())
    left = [j for j in todo if j.state != "done"]
    status = execute(
        left, [train_args(j, spec, threads, extra or {}, configs) for j in left], runs / LOGS, jobs, command
    )
    from .viz import write_report

    started = [j for j in todo if (j.path / "summary.json").is_file() or (j.path / "config.json").is_file()]
    note = (
        f"Grid budget `{budget}`: {spec.epochs} epoch(s), {spec.limit or 'all'} training and "
        f"{spec.test_limit or 'all'} test images, batch {spec.batch_size}; {seeds} seed(s) per cell."
    )
    missing = [f"{j.cell.name} seed {j.seed}" for j in todo if j not in started]
    if missing:
        note += f" Not run yet (incomplete): {', '.join(missing)}."
    try:
        cpu = json.loads((runs / LOGS / CPU_FILE).read_text())
    except (OSError, ValueError):
        cpu = {}
    if cpu:
        note += (
            f" CPU time of all runs (user + sys of their training processes, all sessions): "
            f"{sum(cpu.values()) / 60:.1f} min; each run's is in the runs table."
        )
    planned = {(c.model, c.transform, c.task): seeds for c in chosen}
    report = (
        write_report(
            [j.path for j in started],
            runs / "report.md",
            note=note,
            planned=planned,
            cpu={runs / key: seconds for key, seconds in cpu.items()},
        )
        if started
        else None
    )
    return {"jobs": todo, "status": status, "failed": [j for j in left if status.get(j.path)], "report": report}


def add_command(sub: Any) -> None:
    """Adds ``stnkit grid`` to the subparsers ``sub`` of the ``stnkit`` command."""
    p = sub.add_parser(
        "grid",
        help="train a named set of paper cells (resumable, N at once), then report",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    p.add_argument("sets", nargs="+", metavar="SET", help=f"cell sets: {', '.join([*CELL_SETS, 'all'])}")
    p.add_argument("--runs", default="runs/grid", help="the grid's directory (default: runs/grid)")
    p.add_argument(
        "--budget",
        default="tiny",
        help="; ".join(f"{k}: {v.epochs} epochs, {v.limit or 'all'} images" for k, v in BUDGETS.items()),
    )
    p.add_argument("--epochs", type=int, help="override the budget's epochs")
    p.add_argument("--limit", type=int, help="override the budget's training images")
    p.add_argument("--test-limit", type=int, help="override the budget's test images")
    p.add_argument("--seeds", type=int, default=1, help="runs per cell (default: 1)")
    p.add_argument("--jobs", type=int, default=1, help="trainings at once (default: 1)")
    p.add_argument("--threads", type=int, help="torch threads per training (default: CPUs // jobs)")
    p.add_argument("--cells", nargs="+", default=(), help="only these cells, e.g. rts_st-cnn_affine rts_cnn")
    p.add_argument("--models", nargs="+", default=(), help="only these models, e.g. cnn st-cnn")
    p.add_argument("--data-dir", help="digits folder (default: $STNKIT_DATA_DIR, cache, embedded sample)")
    p.add_argument("--device", help="auto, cpu or cuda (several processes share one GPU)")
    p.set_defaults(func=cmd_grid)


def cmd_grid(args: argparse.Namespace) -> int:
    """``stnkit grid``: prints what ran, what failed (with its log) and where the report is."""
    result = run_grid(
        args.runs,
        args.sets,
        budget=args.budget,
        seeds=args.seeds,
        jobs=args.jobs,
        threads=args.threads,
        cells=args.cells,
        models=args.models,
        overrides={"epochs": args.epochs, "limit": args.limit, "test_limit": args.test_limit},
        extra={"data_dir": args.data_dir, "device": args.device},
    )
    skipped = sum(j.state == "done" for j in result["jobs"])
    print(
        f"{len(result['jobs'])} run(s): {skipped} already complete, {len(result['status'])} trained or resumed, "
        f"{len(result['failed'])} failed"
    )
    for job in result["failed"]:
        print(f"  failed: {job.path} (log: {Path(args.runs) / LOGS / f'{job.cell.name}_seed{job.seed}.log'})")
    if result["report"] is not None:
        print(f"wrote {result['report']}")
    return 1 if result["failed"] else 0
