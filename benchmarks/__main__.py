"""``python -m benchmarks``: runs the sections, prints a table of times and ratios, writes JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

from . import _timing

SECTIONS = ("affine", "tps", "projective", "sampling", "training", "distortions", "families", "fields")


def _runners(smoke: bool, repeats: int, warmup: int) -> dict[str, Callable[[], list[dict[str, Any]]]]:
    from . import affine, families, kornia_warps, sampling, training

    return {
        "affine": lambda: affine.run(smoke, repeats, warmup),
        "tps": lambda: kornia_warps.run_tps(smoke, repeats, warmup),
        "projective": lambda: kornia_warps.run_projective(smoke, repeats, warmup),
        "sampling": lambda: sampling.run(smoke, repeats, warmup),
        "training": lambda: [training.training_step(smoke, max(repeats // 2, 3), warmup)],
        "distortions": lambda: training.distortions(smoke),
        "families": lambda: families.run_families(smoke, repeats, warmup),
        "fields": lambda: families.run_fields(smoke, repeats, warmup),
    }


def _skip_errors() -> tuple[type[BaseException], ...]:
    from . import families, kornia_warps, training

    return (kornia_warps.Unavailable, training.Unavailable, families.Unavailable)


def run(sections: list[str], *, smoke: bool = False, repeats: int = 50, warmup: int = 3,
        log: Callable[[str], None] = print) -> dict[str, Any]:
    """Runs ``sections``; returns ``{"machine", "smoke", "results", "skipped"}``."""
    runners = _runners(smoke, repeats, warmup)
    results: list[dict[str, Any]] = []
    skipped: dict[str, str] = {}
    for section in sections:
        start = time.perf_counter()
        try:
            rows = runners[section]()
        except _skip_errors() as err:
            skipped[section] = str(err)
            log(f"[{section}] skipped: {err}")
            continue
        if smoke:  # one call at tiny sizes: the targets do not apply
            for row in rows:
                row.pop("meets_target", None)
        results.extend(rows)
        log(f"[{section}] {len(rows)} case(s) in {time.perf_counter() - start:.1f} s")
    return {"machine": _timing.machine(), "smoke": smoke, "repeats": repeats, "warmup": warmup,
            "results": results, "skipped": skipped}


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(report: dict[str, Any]) -> str:
    """The results as a plain-text table (times in ms; ``x`` = baseline / ours, above 1 is faster)."""
    lines = []
    m = report["machine"]
    lines.append(f"machine: {m['cpu']} ({m['cpu_count']} cores, {m['torch_threads']} torch threads, "
                 f"{m.get('clock', 'wall')} clock), "
                 f"torch {m['torch']}, kornia {m.get('kornia')}, python {m['python']}, "
                 f"load average {m.get('load_average')}")
    if report["smoke"]:
        lines.append("smoke run: every case once at tiny sizes; the times mean nothing")
    head = (f"{'case':<26} {'ours fwd':>9} {'base fwd':>9} {'x fwd':>6} {'ours f+b':>9} {'base f+b':>9} "
            f"{'x f+b':>6} {'peak MB ours/base':>18}  note")
    comparisons = [r for r in report["results"] if "fwd_ms" in r]
    for section in dict.fromkeys(r["section"] for r in comparisons):
        rows = [r for r in comparisons if r["section"] == section]
        lines.append("")
        lines.append(f"== {section}: ours = {rows[0]['ours']}; baseline = {rows[0]['baseline']}")
        lines.append(head)
        for r in rows:
            peak = r.get("peak_mb")
            peak_s = f"{_fmt(peak['ours'])}/{_fmt(peak['baseline'])}" if peak else "-"
            note = []
            if "floor_fwd_bwd_ms" in r:
                note.append(f"grid_sample alone {r['floor_fwd_bwd_ms']:.2f}")
            if "overhead_step" in r:
                note.append(f"overhead fwd {r['overhead_fwd']:.2f}x, step {r['overhead_step']:.2f}x "
                            f"(target <= {r['target_overhead']})")
            if "breakdown_ms" in r:
                note.append("parts (ms, fwd+bwd): " + ", ".join(f"{k} {v:.1f}" for k, v in r["breakdown_ms"].items()))
            if "target_speedup_fwd_bwd" in r:
                note.append(f"target f+b >= {r['target_speedup_fwd_bwd']}x")
            if "meets_target" in r:
                note.append("MET" if r["meets_target"] else "MISSED")
            case = r["name"].split("/", 1)[1]
            lines.append(f"{case:<26} {r['fwd_ms']['ours']:>9.3f} {r['fwd_ms']['baseline']:>9.3f} "
                         f"{r['speedup_fwd']:>6.2f} {r['fwd_bwd_ms']['ours']:>9.3f} "
                         f"{r['fwd_bwd_ms']['baseline']:>9.3f} {r['speedup_fwd_bwd']:>6.2f} {peak_s:>18}  "
                         f"{'; '.join(note)}")
    others = [r for r in report["results"] if "fwd_ms" not in r]
    if others:
        lines.append("")
        lines.append("== distortions: images per second")
        for r in others:
            extra = ""
            if "target_images_per_s" in r:
                extra = f"  (target >= {r['target_images_per_s']:,}: {'MET' if r.get('meets_target') else 'MISSED'})"
            lines.append(f"{r.get('distortion', r.get('name')):<12} {str(tuple(r.get('shape', ()))):<14} "
                         f"{r.get('images_per_s', 0):>10,} images/s{extra}")
    for section, why in report.get("skipped", {}).items():
        lines.append(f"[{section}] skipped: {why}")
    return "\n".join(lines)


def _ms(x: float) -> str:
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.3g}"


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown tables (for ``docs/performance.md``)."""
    lines = []
    comparisons = [r for r in report["results"] if "fwd_ms" in r]
    for section in dict.fromkeys(r["section"] for r in comparisons):
        rows = [r for r in comparisons if r["section"] == section]
        lines += ["", f"**{section}**: ours = {rows[0]['ours']}; baseline = {rows[0]['baseline']}", "",
                  "| case | ours fwd | base fwd | x fwd | ours f+b | base f+b | x f+b | peak MB ours / base | note |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            peak = r.get("peak_mb")
            note = []
            if "floor_fwd_bwd_ms" in r:
                note.append(f"grid_sample alone {_ms(r['floor_fwd_bwd_ms'])}")
            if "overhead_step" in r:
                note.append(f"step overhead {r['overhead_step']:.2f}x")
            if "breakdown_ms" in r:
                note.append("parts: " + ", ".join(f"{k} {v:.1f}" for k, v in r["breakdown_ms"].items()))
            if "meets_target" in r:
                note.append("target met" if r["meets_target"] else "target missed")
            lines.append(f"| {r['name'].split('/', 1)[1]} | {_ms(r['fwd_ms']['ours'])} | {_ms(r['fwd_ms']['baseline'])} | "
                         f"{r['speedup_fwd']:.2f} | {_ms(r['fwd_bwd_ms']['ours'])} | {_ms(r['fwd_bwd_ms']['baseline'])} | "
                         f"{r['speedup_fwd_bwd']:.2f} | "
                         f"{_fmt(peak['ours']) + ' / ' + _fmt(peak['baseline']) if peak else '-'} | {'; '.join(note)} |")
    others = [r for r in report["results"] if "fwd_ms" not in r]
    if others:
        lines += ["", "| distortion | shape | images/s |", "|---|---|---:|"]
        lines += [f"| {r.get('distortion', r.get('name'))} | {tuple(r.get('shape', ()))} | {r.get('images_per_s', 0):,} |"
                  for r in others]
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: Path) -> None:
    """Writes ``report`` to ``path`` atomically (temp file in the same folder, then ``os.replace``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every case once at tiny sizes (seconds)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON to this path")
    parser.add_argument("--only", help=f"comma-separated sections out of {','.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, default=50, help="timed repeats per case (median reported)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per case first")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: PyTorch's choice)")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables instead of plain text")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall time (default), or one thread's CPU time with PyTorch on one thread "
                             "(steadier on a machine that others are using)")
    args = parser.parse_args(argv)
    sections = list(SECTIONS) if not args.only else [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        parser.error(f"--only: unknown section(s) {', '.join(unknown)}; expected some of {', '.join(SECTIONS)}")
    if args.repeats < 1 or args.warmup < 0:
        parser.error(f"--repeats must be >= 1 and --warmup >= 0; got {args.repeats} and {args.warmup}")
    if args.threads and args.clock == "cpu":
        parser.error("--threads: the cpu clock runs PyTorch on one thread")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.clock == "cpu":
        _timing.use_cpu_clock()
    report = run(sections, smoke=args.smoke, repeats=args.repeats, warmup=args.warmup,
                 log=lambda s: print(s, file=sys.stderr))
    report["command"] = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    print(markdown(report) if args.markdown else table(report))
    if args.json:
        write_json(report, args.json)
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
