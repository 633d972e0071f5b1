"""The ``stnkit`` command: parses arguments, builds a config and calls the library.

Subcommands: ``train``, ``eval``, ``list``, ``show``, ``report``, ``export``, ``grid`` and ``quickstart``
(the README's main job). User errors (bad names or numbers, missing data or files) end with one line
``stnkit <command>: error: ...`` and exit status 2; set ``STNKIT_DEBUG=1`` for the traceback.

This module holds the entry point (:func:`main`), the parser and the training commands (``train``,
``quickstart``); the commands that train nothing are in :mod:`stnkit.experiments.inspection`, ``export``
and ``grid`` in :mod:`stnkit.experiments.export` and :mod:`stnkit.experiments.grid` (each module adds
its own subcommands).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import typing
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ExportError
from .inspection import add_commands as add_inspection_commands
from .inspection import cmd_eval, cmd_list, cmd_report, cmd_show
from .notices import one_line_warnings

__all__ = [
    "QUICKSTART",
    "USER_ERRORS",
    "Interrupted",
    "UserError",
    "build_parser",
    "cmd_eval",
    "cmd_list",
    "cmd_quickstart",
    "cmd_report",
    "cmd_show",
    "cmd_train",
    "main",
]

USER_ERRORS = (ValueError, TypeError, OSError, ExportError)

# The README's main job: CNN and ST-CNN on RTS from the embedded 4,000 / 1,000 real digits. Both
# read the 2x-pooled image (the same classifier on the same input: the transformer's own effect), which
# keeps the job under a minute; plain `stnkit train --model cnn` sees the whole canvas.
QUICKSTART = {
    "task": "rts",
    "limit": 4000,
    "test_limit": 1000,
    "epochs": 12,
    "batch_size": 64,
    "optimizer": "adam",
    "lr": 2e-3,
    "schedule": "cosine",
    "loc_lr_mult": 1.0,
    "downsample": True,
    "seed": 0,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> typing.NoReturn:  # one line, no usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class UserError(Exception):
    """A mistake of the user's, reported as one line."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during training; ``resume_dir`` is set only when ``--resume`` can continue the run there."""

    def __init__(self, resume_dir: Path | None = None, note: str = "") -> None:
        super().__init__()
        self.resume_dir, self.note = resume_dir, note


# -- option generation from TrainConfig ----------------------------------------------------------
def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"grid_size\": 4}}', got {text!r} ({err})"
        ) from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"grid_size\": 4}}', got {text!r}")
    return value


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--option`` per :class:`TrainConfig` setting, typed from its annotation; only the
    options given end up in the namespace (``argparse.SUPPRESS``), as overrides."""
    import dataclasses

    from .train.config import TrainConfig, field_types

    group = parser.add_argument_group("settings (override the defaults and --config)")
    hints = field_types()
    for f in dataclasses.fields(TrainConfig):
        args = [a for a in typing.get_args(hints[f.name]) if a is not type(None)]
        base = args[0] if args else hints[f.name]
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else "{}"
        kw: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f"{f.metadata.get('help', '')} (default: {default})",
        }
        if base is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif base is dict:
            group.add_argument(flag, type=_json_object, metavar="JSON", **kw)
        else:
            group.add_argument(flag, type=base, metavar=base.__name__.upper(), **kw)
    group.add_argument(
        "--dataset", dest="dataset", default=argparse.SUPPRESS, metavar="STR", help="deprecated: the old name of --task"
    )


def _config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None):
    from .train.config import TrainConfig, field_types, read_config_file, with_task_recipe

    values: dict[str, Any] = dict(base or {})
    if args.config:
        values.update(read_config_file(args.config))
    values.update({k: getattr(args, k) for k in [*field_types(), "dataset"] if hasattr(args, k)})
    return TrainConfig.from_dict(with_task_recipe(values)).validate()


# -- commands --------------------------------------------------------------------------------------
def _viz_callbacks(trainer: Any) -> list:
    """The training animation (16 fixed test images) for models with 2-D spatial transformers."""
    if not any(st.transform.ndim == 2 for st in trainer.model.spatial_transformers):
        return []
    try:
        from .viz import TrainingAnimation
    except ImportError:
        return []
    images = trainer.task.images(next(iter(trainer.test_set.batches(0, 16))))
    return [TrainingAnimation(images)]


def _make_trainer(
    config: Any, out: Path, *, resume: bool, progress: bool, animate: bool, overwrite: bool, env: Any = None
) -> Any:
    from .train import Trainer

    try:
        trainer = Trainer(config, out, resume=resume, progress=progress, overwrite=overwrite, env=env)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    if animate and trainer.env.is_main:
        trainer.callbacks += _viz_callbacks(trainer)
    return trainer


def _fit(trainer: Any) -> dict:
    """``trainer.fit()`` with the run-directory errors as one line and an honest Ctrl-C hint."""
    from .train.rundir import RunDirectoryError, SettingsError

    try:
        return trainer.fit()
    except (RunDirectoryError, SettingsError) as err:
        raise UserError(str(err)) from err
    except KeyboardInterrupt as err:
        rd = trainer.rundir
        note = f"; the previous run is back in {trainer.run_dir}, untouched" if rd.restored and rd.overwrite else ""
        raise Interrupted(trainer.run_dir if rd.resumable else None, note) from err


def _train_one(config: Any, out: Path, *, resume: bool, progress: bool, animate: bool, overwrite: bool) -> dict:
    with _process_group(config.device) as env:  # under torchrun: the caller owns the process group
        return _fit(
            _make_trainer(config, out, resume=resume, progress=progress, animate=animate, overwrite=overwrite, env=env)
        )


@contextlib.contextmanager
def _process_group(device: str) -> Iterator[Any]:
    """Joins the process group under torchrun (the caller's job, not the trainer's) and leaves it at
    the end; a bad ``device`` is a user error."""
    from .train import distributed

    try:
        env = distributed.setup(device)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    try:
        yield env
    finally:
        distributed.cleanup(env)


def _headline(summary: dict, task_name: str) -> str:
    """``test error 1.23%``: the task's headline metric of a run summary."""
    from .tasks import get_task, headline

    metric = headline(get_task(task_name))
    value = summary.get(f"test_{metric.name}")
    shown = "n/a" if value is None else f"{value:.2f}{metric.unit}"
    return f"{'test' if get_task(task_name).scored_on == 'test' else 'training-set'} {metric.name} {shown}"


def cmd_train(args: argparse.Namespace) -> int:
    from .train import TrainConfig
    from .train.build import saved_config
    from .train.checkpoint import CHECKPOINT, CONFIG, load_checkpoint

    base = None
    if args.resume:
        if args.out is None:
            raise UserError("--resume: expected --out RUN_DIR, the run to continue")
        saved = Path(args.out) / CONFIG
        if not saved.is_file():
            raise UserError(f"--resume: no {CONFIG} in {args.out!r}; is it a run directory of `stnkit train`?")
        try:
            base = TrainConfig.from_dict(json.loads(saved.read_text()), where=str(saved)).to_dict()
        except ValueError as err:
            raise UserError(f"--resume: cannot read {saved}: {err}") from err
        if (Path(args.out) / CHECKPOINT).is_file():  # rundir: config.json stays as recorded; a resumed run
            try:  # continues with the settings its checkpoint holds (e.g. a longer --epochs of an earlier resume)
                base = saved_config(load_checkpoint(args.out), where=f"run {args.out}").to_dict()
            except ValueError as err:
                raise UserError(f"--resume: {err}") from err
    try:
        config = _config_from_args(args, base)
    except USER_ERRORS as err:
        raise UserError(str(err)) from err
    out = Path(args.out or f"runs/{config.model}-{config.transform}-{config.task}")
    summary = _train_one(
        config,
        out,
        resume=args.resume,
        progress=not args.no_progress,
        animate=not args.no_animation,
        overwrite=args.overwrite,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        print(
            f"{summary['label']} on {config.task}: {_headline(summary, config.task)} "
            f"after {summary['epochs']} epochs ({summary['train_time_s']:.0f} s); run saved in {out}"
        )
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from .tasks import get_task
    from .train import TrainConfig

    out = Path(args.out)
    start = time.perf_counter()
    errors: dict[str, float] = {}
    trainers = {}
    for model in ("cnn", "st-cnn"):  # both built (and both directories checked) before anything is written
        overrides = {"model": model, "transform": "affine", **QUICKSTART, "threads": args.threads}
        if args.epochs is not None:
            overrides["epochs"] = args.epochs
        if args.data_dir is not None:
            overrides["data_dir"] = args.data_dir
        try:
            config = TrainConfig.from_dict(overrides).validate()
        except USER_ERRORS as err:
            raise UserError(str(err)) from err
        trainers[model] = _make_trainer(
            config, out / model, resume=False, progress=not args.no_progress, animate=True, overwrite=True
        )
    for model, trainer in trainers.items():
        print(f"training {model} on RTS ({trainer.config.epochs} epochs) into {out / model} ...", flush=True)
        summary = _fit(trainer)
        errors[model] = summary["test_error"]
    try:
        from .viz import show_run

        panel = show_run(out / "st-cnn", out / "st-cnn" / "panel.png")
        print(f"ST-CNN panel: {panel}")
    except ImportError:
        pass
    minutes = (time.perf_counter() - start) / 60
    print(
        f"\nRTS test error ({summary['test_images']} test digits, {summary['train_images']} training digits, "
        f"{minutes:.1f} min):"
    )
    paper = get_task(str(QUICKSTART["task"])).paper_value
    print(f"  CNN            {errors['cnn']:5.2f}%")
    print(
        f"  ST-CNN affine  {errors['st-cnn']:5.2f}%   (paper, full MNIST and budget: CNN {paper('cnn', None)}%, "
        f"ST-CNN {paper('st-cnn', 'affine')}%)"
    )
    print(f"runs, animation and panel in {out}/")
    return 0


# -- parser ----------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="stnkit", description="Spatial Transformer Networks: train, evaluate, inspect.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"stnkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser(
        "train",
        help="train a model (one run directory)",
        description=(
            "Train a model. Settings: defaults < --config FILE < options. Under `torchrun --nproc_per_node N` "
            "the same command trains with DistributedDataParallel."
        ),
    )
    p.add_argument("--config", help="JSON or TOML config file (e.g. configs/table1_st-cnn_affine_rts.json)")
    p.add_argument("--out", help="run directory (default: runs/MODEL-TRANSFORM-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh even if --out holds a run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-animation", action="store_true", help="no training animation (ST models)")
    _add_config_options(p)
    p.set_defaults(func=cmd_train)

    add_inspection_commands(sub)  # `stnkit eval`, `list`, `show`, `report`: experiments/inspection.py
    from .export import add_command  # `stnkit export`: options and logic in experiments/export.py

    add_command(sub)
    from .grid import add_command as add_grid  # `stnkit grid`: logic in experiments/grid.py

    add_grid(sub)

    p = sub.add_parser("quickstart", help="CNN vs ST-CNN on RTS in under a minute (embedded digits)")
    p.add_argument("--out", default="runs/quickstart", help="where the two runs go (default: runs/quickstart)")
    p.add_argument("--epochs", type=int, help=f"epochs per model (default: {QUICKSTART['epochs']})")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--data-dir", help="digits folder (default: embedded 4,000 / 1,000 MNIST sample)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``stnkit`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Raises:
        SystemExit: with a one-line message for user errors (status 2), a diverged run (1) or
            Ctrl-C (130).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"stnkit {args.command}"
    rank = int(os.environ.get("RANK", "0"))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING, format="%(message)s", stream=sys.stderr)
    from .train import TrainingDiverged

    expected: tuple[type[BaseException], ...] = (UserError, TrainingDiverged, KeyboardInterrupt)
    if args.command != "train":  # train wraps its user errors itself; others in training are bugs
        expected += USER_ERRORS
    try:
        with one_line_warnings(prog):
            return args.func(args)
    except BrokenPipeError:  # `stnkit list | head`
        sys.stderr.close()
        return 0
    except expected as err:
        if os.environ.get("STNKIT_DEBUG") or os.environ.get("STN_DEBUG"):
            raise
        if isinstance(err, KeyboardInterrupt):  # suggest --resume only where it can work (rundir rule)
            where = getattr(err, "resume_dir", None)
            resume = (
                f"; continue with: stnkit train --resume --out {where}" if where and args.command == "train" else ""
            )
            message, status = f"{prog}: interrupted{resume}{getattr(err, 'note', '')}", 130
        else:
            message, status = f"{prog}: error: {err}", 1 if isinstance(err, TrainingDiverged) else 2
        print(" ".join(message.split()), file=sys.stderr)
        raise SystemExit(status) from None


if __name__ == "__main__":
    sys.exit(main())
