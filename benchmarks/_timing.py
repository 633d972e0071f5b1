"""Timing and memory helpers shared by every benchmark section.

Timing: the competing implementations run **interleaved** in one process (each repeat runs every
contender once, in rotating order), after warm-up, and the **median** time is reported, so that
both see the same machine load. The clock is wall time (``time.perf_counter``; on a CPU every
PyTorch op is synchronous, so nothing is left running when the clock stops), or, with
:func:`use_cpu_clock`, the calling thread's CPU time (``time.thread_time``) with PyTorch limited to
that one thread: slower, but it does not count the time other processes take from a shared machine.

Peak memory (CPU): the profiler (``torch.profiler`` with ``profile_memory=True``) records every
allocation and free made by PyTorch's CPU allocator during one call; replaying them in time order
gives the largest number of bytes alive at once **above what was alive before the call** (inputs
and parameters excluded, everything the call creates included: grids, saved tensors, gradients,
temporaries). This is the figure that decides whether a bigger batch fits. It counts tensor memory
only (not Python objects or the allocator's cached pages) and is deterministic, unlike the process's
resident set size.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import sys
import time
from typing import Any, Callable, Iterator

import torch

Fn = Callable[[], Any]

_clock: Callable[[], float] = time.perf_counter


def use_cpu_clock() -> None:
    """Times with the thread's CPU time from now on, and runs PyTorch on this one thread."""
    global _clock
    torch.set_num_threads(1)
    _clock = time.thread_time


def clock_name() -> str:
    """``"wall"`` or ``"cpu"`` (see :func:`use_cpu_clock`)."""
    return "cpu" if _clock is time.thread_time else "wall"


def interleaved(fns: dict[str, Fn], *, repeats: int, warmup: int, budget_s: float | None = None) -> dict[str, float]:
    """Median wall time in milliseconds of each function, timed side by side.

    Args:
        fns: Name -> zero-argument callable.
        repeats: Timed calls per function (fewer if ``budget_s`` runs out first; at least 3).
        warmup: Untimed calls per function first.
        budget_s: Rough limit on the total timed seconds for this group.

    Returns:
        Name -> median milliseconds.
    """
    names = list(fns)
    per_round = 0.0
    for i in range(warmup):
        start = _clock()
        for name in names:
            fns[name]()
        per_round = _clock() - start
        if budget_s is not None and per_round * (warmup - i - 1) > budget_s / 2:
            break  # slow cases: one warm-up round is enough
    if budget_s is not None and per_round > 0:
        repeats = max(3, min(repeats, int(budget_s / per_round)))
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[: r % len(names)]  # rotate who goes first
        for name in order:
            t0 = _clock()
            fns[name]()
            times[name].append(_clock() - t0)
    return {name: statistics.median(ts) * 1e3 for name, ts in times.items()}


def peak_memory_bytes(fn: Fn) -> int | None:
    """Largest number of bytes alive at once during ``fn()`` above the level before it (see the
    module docstring), or ``None`` when this PyTorch's profiler cannot tell."""
    try:
        from torch._C._profiler import _EventType
        from torch.profiler import ProfilerActivity, profile
    except ImportError:  # pragma: no cover - private API moved
        return None
    fn()  # warm caches outside the measurement
    with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    allocations: list[tuple[int, int]] = []

    def walk(event: Any) -> None:
        if event.tag == _EventType.Allocation:
            allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
        for child in event.children:
            walk(child)

    try:
        for root in prof.profiler.kineto_results.experimental_event_tree():
            walk(root)
    except AttributeError:  # pragma: no cover - private API moved
        return None
    alive = peak = 0
    for _, size in sorted(allocations):
        alive += size
        peak = max(peak, alive)
    return peak


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silences the profiler's C++ start/stop lines (written straight to file descriptor 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w", encoding="utf-8") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_name() -> str:
    """The CPU model from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    info: dict[str, Any] = {
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "clock": clock_name(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import kornia

        info["kornia"] = kornia.__version__
    except ImportError:
        info["kornia"] = None
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        pass
    return info


def significant(x: float, digits: int = 4) -> float:
    """``x`` rounded to ``digits`` significant digits (for the JSON)."""
    return float(f"{x:.{digits}g}")


def comparison(name: str, section: str, shape: tuple[int, ...], ours: str, baseline: str,
               times: dict[str, float], peaks: dict[str, int | None] | None = None,
               **extra: Any) -> dict[str, Any]:
    """One side-by-side result: ``times`` holds ``ours_fwd``, ``baseline_fwd``, ``ours_fwd_bwd``,
    ``baseline_fwd_bwd`` in ms; speedups are ``baseline / ours`` (above 1: ours is faster)."""
    row: dict[str, Any] = {
        "name": name, "section": section, "shape": list(shape), "ours": ours, "baseline": baseline,
        "fwd_ms": {"ours": significant(times["ours_fwd"]), "baseline": significant(times["baseline_fwd"])},
        "fwd_bwd_ms": {"ours": significant(times["ours_fwd_bwd"]), "baseline": significant(times["baseline_fwd_bwd"])},
        "speedup_fwd": significant(times["baseline_fwd"] / times["ours_fwd"]),
        "speedup_fwd_bwd": significant(times["baseline_fwd_bwd"] / times["ours_fwd_bwd"]),
    }
    if peaks is not None:
        row["peak_mb"] = {k: (None if v is None else round(v / 2**20, 3)) for k, v in peaks.items()}
    row.update(extra)
    return row
