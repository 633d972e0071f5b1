"""``stnkit eval``, ``list``, ``show`` and ``report``: the commands that train nothing.

They look at names (``list``) or at finished runs (the others), each after putting back a run that a
killed ``--overwrite`` set aside (``train/rundir.py``). Their bad input raises ``ValueError``,
``TypeError`` or ``OSError``, which :func:`stnkit.experiments.cli.main` reports as one line (exit status
2). The ``stnkit`` command adds them with :func:`add_commands`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    """Adds ``stnkit eval``, ``list``, ``show`` and ``report`` to the subparsers ``sub`` of the ``stnkit`` command."""
    p = sub.add_parser("eval", help="error %% of a run on its test set or on an .npz")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--npz", help="evaluate on this file: images (N, H, W) or (N, C, H, W) uint8, labels (N,)")
    p.add_argument("--json", action="store_true", help='print {"error": ..., "accuracy": ..., "n": ...}')
    p.add_argument("--data-dir", help="where the digits are, if not where the run found them")
    p.add_argument("--batch-size", type=int, default=1000, help="evaluation batch size (default: 1000)")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("list", help="tasks, models, transform families, digit data sets (one name per row)")
    p.add_argument("--params", action="store_true", help="also count each model's parameters per input size")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", help="panel of what a run's spatial transformers do")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument("--out", help="image file (default: RUN/panel.png)")
    p.add_argument("--npz", help="show these images instead of the test set")
    p.add_argument("--n", type=int, default=16, help="number of images (default: 16)")
    p.add_argument("--seed", type=int, default=0, help="which test images (default: 0)")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("report", help="learning curves and results of several runs")
    p.add_argument("runs", nargs="+", help="run directories")
    p.add_argument("--out", default="report.md", help="report file (default: report.md)")
    p.set_defaults(func=cmd_report)


def _recover(run: str) -> None:
    """Puts back a run that a killed ``--overwrite`` set aside, before reading ``run`` (rundir rule)."""
    from .train.rundir import recover

    path = Path(run)
    recover(path.parent if path.suffix == ".pt" else path)


def cmd_eval(args: argparse.Namespace) -> int:
    """``stnkit eval``: the run's test error (or its task's metrics) on its test set or an ``.npz``."""
    from .train import evaluate_run

    _recover(args.run)
    result = evaluate_run(args.run, npz=args.npz, data_dir=args.data_dir, batch_size=args.batch_size)
    if "error" not in result:  # tasks with their own metrics (registration, co-localisation)
        metrics = {k: v for k, v in result.items() if k not in ("n", "on")}
        print(
            json.dumps({**metrics, "n": result["n"]})
            if args.json
            else f"{args.run}: "
            + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
            + f" on {result['n']} samples of {result['on']}"
        )
    elif args.json:
        print(json.dumps({k: result[k] for k in ("error", "accuracy", "n")}))
    else:
        print(
            f"{args.run}: test error {result['error']:.2f}% (accuracy {result['accuracy']:.2f}%) "
            f"on {result['n']} images of {result['on']}"
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """``stnkit list``: every name a user can pass (:func:`~stnkit.experiments.listing.print_list`)."""
    from .listing import print_list

    print_list(params=args.params)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """``stnkit show``: writes the panel of what the run's spatial transformers do."""
    from .viz import show_run

    _recover(args.run)
    run = Path(args.run)
    default = (run if run.is_dir() else run.parent) / "panel.png"
    path = show_run(run, args.out or default, npz=args.npz, n=args.n, seed=args.seed)
    print(f"wrote {path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``stnkit report``: writes the learning curves and results of several runs."""
    from .viz import write_report

    for run in args.runs:
        _recover(run)
    path = write_report(args.runs, args.out)
    print(f"wrote {path}")
    return 0
