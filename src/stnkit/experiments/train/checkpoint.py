"""Run-directory files, all written atomically: temp file in the same directory + ``os.replace``.

A reader (``stnkit eval``, a crash, a Ctrl-C) therefore sees either the previous complete file or
the new complete file, never a partial one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from ..._io import atomic_open

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
FORMAT = 1


def _atomic(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    with atomic_open(path) as f:
        write(f)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically."""
    return _atomic(Path(path), lambda f: f.write(text.encode()))


def write_json(path: str | Path, value: Any) -> Path:
    """Writes ``value`` as indented JSON atomically."""
    return write_text(path, json.dumps(value, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    """Writes one JSON object per line atomically."""
    return write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Saves a checkpoint dict (tensors, numbers, strings, lists, dicts) atomically."""
    return _atomic(Path(path), lambda f: torch.save({"format": FORMAT, **state}, f))


def resolve_checkpoint(path: str | Path) -> Path:
    """``RUN_DIR`` -> ``RUN_DIR/checkpoint.pt``; a file is returned as it is.

    Raises:
        FileNotFoundError: naming what is missing.
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
        if not path.is_file():
            raise FileNotFoundError(
                f"run: no {CHECKPOINT} in {str(path.parent)!r}; is it a run directory of `stnkit train`?"
            )
    elif not path.is_file():
        raise FileNotFoundError(f"run: no such run directory or checkpoint {str(path)!r}")
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a checkpoint written by :func:`save_checkpoint` (a run dir or a ``.pt`` file), on CPU.

    Raises:
        FileNotFoundError: no such run or file.
        ValueError: not an stnkit checkpoint, or its weights hold NaN/inf.
    """
    path = resolve_checkpoint(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated / foreign files: say what the file is not
        raise ValueError(
            f"run: {str(path)!r} is not a readable stnkit checkpoint ({type(err).__name__}: {err})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or "model" not in state:
        raise ValueError(f"run: {str(path)!r} is not an stnkit checkpoint (format {FORMAT})")
    bad = [
        k
        for k, v in state["model"].items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:  # rundir rule: eval, show and --resume refuse such a checkpoint, with this reason
        raise ValueError(
            f"run: {str(path)!r} holds non-finite weights (NaN/inf in {', '.join(bad[:3])}"
            f"{', ...' if len(bad) > 3 else ''}); refusing to use it"
        )
    return state
