"""Result report: our test errors beside the paper's, in the layout of its Table 1, and learning curves.

:func:`write_report` reads each run directory (``summary.json``, ``config.json``,
``metrics.jsonl``, see ``docs/design.md``) and writes a markdown file plus, beside it, a PNG of
the learning curves (test error per epoch, log scale) that the markdown links to.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks import get_task, headline, list_tasks
from ._files import atomic_write
from .paper_results import DISTORTION_LABELS, has_transformer, paper_error, row_label
from .tables import CellKey, report_tables

logger = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What the report needs from one run directory.

    Attributes:
        path: The run directory.
        model, transform, distortion, digits: What was trained on what (library names).
        test_error: Final test error in percent (``None`` if unknown).
        params: Parameter count.
        train_time_s: Training wall time.
        epochs, iterations: Training length.
        curve: ``[(epoch, test error %), ...]`` from ``metrics.jsonl``.
        complete: Whether the run finished (``"completed"`` in ``summary.json``; for runs written
            before that key, a summary whose epochs reach the configured ones). Incomplete runs
            (interrupted, diverged or still running) are never averaged into a table cell.
        train_images: Training set size, if known.
        embedded: Trained on the embedded 5,000-digit MNIST sample (not comparable to the paper).
    """

    path: Path
    model: str
    transform: str | None
    distortion: str
    digits: str = "mnist"
    test_error: float | None = None
    params: int | None = None
    train_time_s: float | None = None
    epochs: int | None = None
    iterations: int | None = None
    curve: list[tuple[int, float]] = field(default_factory=list)
    complete: bool = True
    train_images: int | None = None
    embedded: bool = False

    @property
    def label(self) -> str:
        """Row name in the paper's style, e.g. ``"ST-CNN Aff"``."""
        return row_label(self.model, self.transform)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"runs: cannot read {path}: {err}") from None
    return data if isinstance(data, dict) else {}


def _read_metrics(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except ValueError:  # a line cut short by an interruption
                logger.warning("skipping an unreadable line of %s", path)
    return rows


def _number(value: Any) -> float | None:
    finite = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if finite else None


def load_result(run: str | Path) -> RunResult:
    """Reads one run directory (or a file inside it, such as its ``checkpoint.pt``).

    Raises:
        ValueError: when the directory has neither ``summary.json`` nor ``config.json``.
    """
    path = Path(run)
    if path.is_file():
        path = path.parent
    summary, config = _read_json(path / "summary.json"), _read_json(path / "config.json")
    if not summary and not config:
        raise ValueError(f"runs: expected a run directory with summary.json or config.json, got {str(run)!r}")
    info = {**config, **summary}
    task = str(info.get("task", info.get("dataset", "?")))  # runs before tasks wrote "dataset"
    key = f"test_{headline(get_task(task)).name}" if task in list_tasks() else "test_error"  # the task's headline
    metrics = _read_metrics(path / "metrics.jsonl")
    curve = [
        (int(m["epoch"]), float(m[key]))
        for m in metrics
        if _number(m.get("epoch")) is not None and _number(m.get(key)) is not None
    ]
    test_error = _number(summary.get(key))
    if test_error is None and curve:
        test_error = curve[-1][1]
    train_time = _number(summary.get("train_time_s"))
    if train_time is None and metrics:
        train_time = _number(metrics[-1].get("elapsed_s"))
    model = str(info.get("model", "?"))
    transform = info.get("transform") if has_transformer(model) else None
    return RunResult(
        path=path,
        model=model,
        transform=str(transform) if transform else None,
        distortion=task,
        digits=str(info.get("digits", "mnist")),
        test_error=test_error,
        params=info.get("params"),
        train_time_s=train_time,
        epochs=info.get("epochs") if summary else (curve[-1][0] if curve else None),
        iterations=info.get("iterations") if summary else None,
        curve=curve,
        complete=_completed(summary, config),
        train_images=summary.get("train_images"),
        embedded=bool(summary.get("embedded", False)),
    )


def _completed(summary: dict[str, Any], config: dict[str, Any]) -> bool:
    if "completed" in summary:
        return summary["completed"] is True
    done, wanted = _number(summary.get("epochs")), _number(config.get("epochs"))  # runs from before the key
    return done is not None and (wanted is None or done >= wanted)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def _fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes}m {s:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def runs_table(results: Sequence[RunResult], base: Path, cpu: Mapping[str | Path, float] | None = None) -> str:
    """Markdown table with one line per run: error, the paper's, parameters, training time, CPU minutes.

    Args:
        results: The runs.
        base: Run paths are shown relative to it.
        cpu: CPU seconds (user + sys) per run directory, where known (``stnkit grid`` records them).
    """
    seconds = {Path(p).resolve(): s for p, s in (cpu or {}).items()}
    lines = [
        "| run | model | data | test error % | paper % | params | training time | CPU min | epochs | iterations |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        name = f"`{_relative(r.path, base)}`" + ("" if r.complete else " (incomplete)")
        data = f"{r.digits} {DISTORTION_LABELS.get(r.distortion, r.distortion)}"
        if r.embedded:
            data += " (embedded 5k sample)"
        elif isinstance(r.train_images, int) and r.train_images < 60000:
            data += f" ({r.train_images:,} train images)"
        ref = paper_error(r.model, r.transform, r.distortion, r.digits)
        params = f"{r.params:,}" if isinstance(r.params, int) else "—"
        used = seconds.get(r.path.resolve())
        minutes = _fmt(None if used is None else used / 60, 1)
        lines.append(
            f"| {name} | {r.label} | {data} | {_fmt(r.test_error)} | {_fmt(ref, 1)} | {params} | "
            f"{_fmt_time(r.train_time_s)} | {minutes} | {r.epochs if r.epochs is not None else '—'} | "
            f"{r.iterations if r.iterations is not None else '—'} |"
        )
    return "\n".join(lines)


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def plot_learning_curves(results: Sequence[RunResult], path: str | Path, *, dpi: int = 100) -> Path:
    """Writes a PNG of each run's test error per epoch (log scale), atomically.

    Args:
        results: From :func:`load_result`; runs without a curve are left out.
        path: Destination PNG.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    from .panel import save_figure

    fig = Figure(figsize=(7.0, 4.2), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    plotted = 0
    for r in results:
        points = [(e, v) for e, v in r.curve if v > 0]  # a log axis cannot show 0 %
        if not points:
            continue
        epochs, errors = zip(*points, strict=True)
        ax.plot(
            epochs,
            errors,
            marker="o" if len(points) < 30 else None,
            markersize=3,
            label=f"{r.label} · {DISTORTION_LABELS.get(r.distortion, r.distortion)} · {r.path.name}",
        )
        plotted += 1
    ax.set_yscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.yaxis.set_major_formatter(plain)
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if str(f"{v:g}")[0] in "25" else ""))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test error (%)")
    ax.grid(True, which="both", alpha=0.3)
    if plotted:
        ax.legend(fontsize=7, loc="upper right")
    else:
        ax.text(0.5, 0.5, "no metrics.jsonl in the runs given", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return save_figure(fig, path)


def write_report(
    runs: Sequence[str | Path],
    out: str | Path,
    *,
    note: str = "",
    planned: Mapping[CellKey, int] | None = None,
    cpu: Mapping[str | Path, float] | None = None,
) -> Path:
    """Writes the markdown report of ``runs`` and its learning-curve PNG beside it.

    The report holds the paper's tables (Table 1, the TC row, Table 4) where any run or planned cell is
    on one of their tasks, then a table of any other task's runs, the per-run table and the curves
    (the cells' format: :mod:`stnkit.experiments.viz.tables`).

    Args:
        runs: Run directories (or checkpoints inside them); at least one.
        out: The markdown file; the curves go to ``<out stem>_curves.png`` in the same folder.
        note: A paragraph placed under the introduction (``stnkit grid`` states its budget there).
        planned: Runs planned per cell ``(model, transform or None, task)`` on MNIST: a planned cell
            without a complete run reads ``not run`` or ``incomplete`` instead of ``—``.
        cpu: CPU seconds (user + sys) per run directory, shown in the per-run table.

    Returns:
        ``out`` as a :class:`~pathlib.Path`.

    Example:
        >>> write_report(["runs/st-cnn-rts", "runs/cnn-rts"], "report.md")   # doctest: +SKIP
    """
    if isinstance(runs, (str, Path)) or len(runs) == 0:
        raise ValueError(f"runs: expected a non-empty list of run directories, got {runs!r}")
    out = Path(out)
    results = [load_result(r) for r in runs]
    curves = plot_learning_curves(results, out.with_name(f"{out.stem}_curves.png"))
    base = out.parent
    parts = [
        "# Results",
        "",
        f"{len(results)} run(s). Test error in %, each cell **ours** / the paper's (Jaderberg et al., "
        "NIPS 2015). Ours is the mean over a cell's complete runs (seeds), ± their sample standard "
        "deviation and their count (n) where there are several; the paper averages 3 seeds. "
        "`incomplete`: a run started but not finished (never averaged in); `not run`: planned but not "
        "started; `—`: no run and none planned, or no paper number. Runs on fewer than the 60,000 "
        "training digits (see the data column of the runs) are not comparable with the paper.",
        "",
    ]
    parts += [note, ""] if note else []
    parts += report_tables(results, planned)
    parts += [
        "## Runs",
        "",
        runs_table(results, base, cpu),
        "",
        "## Learning curves",
        "",
        f"![test error per epoch]({curves.name})",
        "",
    ]
    return atomic_write(out, "\n".join(parts).encode())
