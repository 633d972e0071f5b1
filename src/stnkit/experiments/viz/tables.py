"""Markdown tables of the report in the paper's layout: Table 1, the TC row, Table 4, then other tasks.

Every cell is ``ours / the paper's`` (test error %). Ours is the mean of the cell's complete runs,
with the sample standard deviation and their count where there are several
(``**0.70 ± 0.14 (n=2)**``); incomplete runs are never averaged in, only counted. A cell with no
complete run reads ``incomplete`` (a run started but not finished), ``not run`` (planned, e.g. by
``stnkit grid``, but not started) or ``—`` (no run and none planned); a cell with some complete runs
counts the others after the number: ``(+1 incomplete, +1 not run)``.

A cell is keyed ``(model, transform, task)`` in the library's names (``transform`` is ``None`` for
models without a spatial transformer); the paper's numbers come from :mod:`.paper_results`.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Protocol

from .paper_results import (
    DISTORTION_LABELS,
    PAPER_DISTORTIONS,
    TABLE1,
    TABLE4,
    TC,
    has_transformer,
    paper_error,
    row_label,
)

#: ``(model, transform or None, task)``: one cell of a table.
CellKey = tuple[str, str | None, str]
#: ``(model, transform or None)``: one row of the paper's tables.
RowKey = tuple[str, str | None]

TABLE1_COLUMNS = ("r", "rts", "p", "e")


class Result(Protocol):
    """What the tables read of a run (:class:`~stnkit.experiments.viz.report.RunResult` has it)."""

    model: str
    transform: str | None
    distortion: str
    digits: str
    test_error: float | None
    complete: bool


class Cells:
    """The runs of one set of digits, gathered by cell, and the cells a plan asks for.

    Args:
        results: Runs; those on other digits than ``digits`` are left out.
        planned: Runs planned per cell (``stnkit grid``: its seeds); planned cells are on MNIST.
        digits: The digits of the tables.
    """

    def __init__(self, results: Sequence[Result], planned: Mapping[CellKey, int], digits: str = "mnist") -> None:
        self.digits = digits
        self.planned = dict(planned) if digits == "mnist" else {}
        self.errors: dict[CellKey, list[float]] = {}
        self.incomplete: dict[CellKey, int] = {}
        self.seen: list[CellKey] = []
        for r in results:
            if r.digits != digits:
                continue
            key = (r.model, r.transform, r.distortion)
            self.seen.append(key)
            if not r.complete:
                self.incomplete[key] = self.incomplete.get(key, 0) + 1
            elif r.test_error is not None:
                self.errors.setdefault(key, []).append(r.test_error)
        self.seen = list(dict.fromkeys(self.seen))

    def keys(self) -> list[CellKey]:
        """Every cell with a run or a plan, runs first, in the order given."""
        return list(dict.fromkeys([*self.seen, *self.planned]))

    def text(self, key: CellKey) -> str:
        """``ours / paper`` for one cell (see the module's docstring)."""
        model, transform, task = key
        reference = paper_error(model, transform, task, self.digits)
        paper = "—" if reference is None else f"{reference:.1f}"
        return f"{cell_text(self.errors.get(key, []), self.incomplete.get(key, 0), self.planned.get(key, 0))} / {paper}"


def cell_text(errors: Sequence[float], incomplete: int = 0, planned: int = 0) -> str:
    """Our side of a cell: mean ± sample std (n) of ``errors``, with incomplete and not-run runs counted.

    Args:
        errors: Test errors (%) of the cell's complete runs.
        incomplete: Runs started but not finished.
        planned: Runs planned for the cell (0: none planned); those neither complete nor incomplete
            count as not run.

    Example:
        >>> cell_text([0.6, 0.8])
        '**0.70 ± 0.14 (n=2)**'
        >>> cell_text([], incomplete=1, planned=3)
        'incomplete (+2 not run)'
        >>> cell_text([], planned=1), cell_text([])
        ('not run', '—')
    """
    missing = max(0, planned - len(errors) - incomplete)
    if errors:
        text = f"{statistics.mean(errors):.2f}"
        if len(errors) > 1:
            text += f" ± {statistics.stdev(errors):.2f} (n={len(errors)})"
        notes = ([f"+{incomplete} incomplete"] if incomplete else []) + ([f"+{missing} not run"] if missing else [])
        return f"**{text}**" + (f" ({', '.join(notes)})" if notes else "")
    if incomplete:
        text = "incomplete" if incomplete == 1 else f"{incomplete} incomplete"
        return text + (f" (+{missing} not run)" if missing else "")
    return "not run" if missing else "—"


def markdown(corner: str, columns: Sequence[str], rows: Sequence[tuple[str, Sequence[str]]]) -> str:
    """A markdown table: a header ``corner | columns...`` and one line per ``(label, cells)``."""
    lines = [f"| {corner} | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return "\n".join(lines)


def _extra_rows(cells: Cells, tasks: Sequence[str], rows: Sequence[RowKey]) -> list[RowKey]:
    """Models run or planned on ``tasks`` that are not among ``rows``, in order of appearance."""
    found = [(m, t) for m, t, task in cells.keys() if task in tasks]
    return [k for k in dict.fromkeys(found) if k not in rows]


def table1(cells: Cells) -> str:
    """Table 1: the paper's models (then any other run on R/RTS/P/E) x R, RTS, P, E."""
    rows = list(TABLE1) + _extra_rows(cells, TABLE1_COLUMNS, list(TABLE1))
    return markdown(
        "model",
        [DISTORTION_LABELS[c] for c in TABLE1_COLUMNS],
        [(row_label(*k), [cells.text((*k, c)) for c in TABLE1_COLUMNS]) for k in rows],
    )


def tc_row(cells: Cells) -> str:
    """The TC row: one column per model (an ST model once per transform run or planned, else unnamed)."""
    columns: list[RowKey] = []
    for model in TC:
        named = [t for m, t, task in cells.keys() if task == "tc" and m == model and t is not None]
        transforms = list(dict.fromkeys(named)) if has_transformer(model) and named else [None]
        columns += [(model, t) for t in transforms]
    columns += _extra_rows(cells, ("tc",), columns)
    return markdown(
        "task", [row_label(*k) for k in columns], [(DISTORTION_LABELS["tc"], [cells.text((*k, "tc")) for k in columns])]
    )


def table4(cells: Cells) -> str:
    """Table 4: the paper's models (then any other run on addition) x the addition error."""
    rows = list(TABLE4) + _extra_rows(cells, ("addition",), list(TABLE4))
    return markdown(
        "model", [DISTORTION_LABELS["addition"]], [(row_label(*k), [cells.text((*k, "addition"))]) for k in rows]
    )


def other_table(cells: Cells, exclude: Sequence[str] = PAPER_DISTORTIONS) -> str | None:
    """Every run on a task outside ``exclude``: models x tasks (``None`` when there is none)."""
    keys = [k for k in cells.keys() if k[2] not in exclude]
    if not keys:
        return None
    tasks = list(dict.fromkeys(k[2] for k in keys))
    rows = list(dict.fromkeys((m, t) for m, t, _ in keys))
    return markdown(
        "model",
        [DISTORTION_LABELS.get(t, t) for t in tasks],
        [(row_label(*k), [cells.text((*k, t)) for t in tasks]) for k in rows],
    )


def report_tables(results: Sequence[Result], planned: Mapping[CellKey, int] | None = None) -> list[str]:
    """The report's table sections (markdown lines): the paper's tables where any MNIST run or plan is
    on one of their tasks, then one table of the other MNIST tasks and one per other set of digits."""
    parts: list[str] = []
    mnist = Cells(results, planned or {}, "mnist")
    if any(k[2] in PAPER_DISTORTIONS for k in mnist.keys()):
        parts += [
            "## Table 1: distorted MNIST",
            "",
            table1(mnist),
            "",
            "## Translated cluttered MNIST (TC, 60x60)",
            "",
            "The paper gives these in its text (section 4.1) and names no transform for ST-FCN and "
            "ST-CNN; its number stands beside every transform run here.",
            "",
            tc_row(mnist),
            "",
            "## Table 4: MNIST addition",
            "",
            table4(mnist),
            "",
        ]
    other = other_table(mnist)
    if other:
        parts += ["## Other MNIST tasks", "", other, ""]
    for digits in dict.fromkeys(r.digits for r in results if r.digits != "mnist"):
        table = other_table(Cells(results, {}, digits), exclude=())
        if table:
            parts += [f"## {digits} (the paper has no numbers for it)", "", table, ""]
    return parts
