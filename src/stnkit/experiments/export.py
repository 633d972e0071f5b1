"""``stnkit export RUN``: a trained run's model to ONNX or to a ``torch.export`` program, checked on
the run's test images in the runtime that will serve it.

Example (a run trained by ``stnkit train --out runs/st``)::

    result = export_run("runs/st", "onnx", "st.onnx")
    result["max_diff"], result["agreement"]   # largest |logit difference|, % equal predictions
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..export import export_onnx, export_program, load_program, torchscript_unsupported

FORMATS = ("onnx", "exported-program")


def _runner(model: nn.Module, fmt: str, example: Tensor, out: Path, opset: int) -> Callable[[Tensor], Tensor]:
    """Exports ``model`` to ``out`` and returns a function running the exported file (not the model)."""
    if fmt == "onnx":
        import onnxruntime

        export_onnx(model, example, out, opset=opset)
        session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        return lambda x: torch.from_numpy(session.run(None, {"input0": x.numpy()})[0])
    export_program(model, example, out)
    program = load_program(out).module()
    return lambda x: program(x)


@torch.no_grad()
def export_run(
    run: str | Path, fmt: str, out: str | Path, *, data_dir: str | None = None, batch_size: int = 500, opset: int = 20
) -> dict[str, Any]:
    """Exports a run's model and runs the exported file on the images its task is scored on.

    The batch size is dynamic: the file is traced on 2 images and run on batches of ``batch_size``
    (the last one smaller).

    Args:
        run: Run directory or checkpoint file.
        fmt: ``"onnx"`` (run in ``onnxruntime``) or ``"exported-program"`` (``torch.export.load``);
            ``"torchscript"`` raises :class:`~stnkit.errors.ExportError` (deprecated in PyTorch).
        out: The file to write.
        data_dir: Where the digits are, if not where the run found them.
        batch_size: Images per call of the exported file.
        opset: ONNX opset (``"onnx"`` only).

    Raises:
        ExportError: What cannot be exported.

    Returns:
        ``{"path", "format", "n", "max_diff", "agreement", "scored_on", "metrics"}``: the largest absolute
        difference of the outputs (exported vs PyTorch), the % of images whose predicted class
        (argmax) agrees, what was scored, and the task's metrics of the exported model (``"error"``
        % for the digit tasks).
    """
    from .train.build import make_task
    from .train.evaluate import load_run

    if fmt == "torchscript":
        torchscript_unsupported()
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    model, config = load_run(run)
    task = make_task(config, data_dir=data_dir)
    out = Path(out)
    run_exported: Callable[[Tensor], Tensor] | None = None
    max_diff, agree, n = 0.0, 0, 0
    for batch in task.eval_data().batches(0, batch_size):
        x = task.images(batch)  # (n, C, H, W)
        if run_exported is None:
            run_exported = _runner(model, fmt, x[:2], out, opset)
        got, want = run_exported(x), model(x)  # (n, outputs)
        max_diff = max(max_diff, float((got - want).abs().max()))
        agree += int((got.argmax(1) == want.argmax(1)).sum())
        n += len(x)
    if run_exported is None or n == 0:
        raise ValueError(f"run: the {task.scored_on} set of {run} holds no images")
    metrics = task.evaluate(_Exported(run_exported), task.eval_data().batches(0, batch_size))
    return {
        "path": str(out),
        "format": fmt,
        "n": n,
        "max_diff": max_diff,
        "agreement": 100.0 * agree / n,
        "scored_on": task.scored_on,
        "metrics": metrics,
    }


class _Exported(nn.Module):
    """The exported file as a module, so that the task scores it as it scores the model."""

    def __init__(self, run: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.run = run

    def forward(self, x: Tensor) -> Tensor:
        return self.run(x)


def add_command(sub: Any) -> None:
    """Adds ``stnkit export`` to the subparsers ``sub`` of the ``stnkit`` command."""
    p = sub.add_parser("export", help="export a run's model to ONNX or torch.export, checked on its test images")
    p.add_argument("run", help="run directory or checkpoint file")
    p.add_argument(
        "--format",
        required=True,
        choices=(*FORMATS, "torchscript"),
        help="onnx or exported-program (torchscript is deprecated in PyTorch: refused with a pointer)",
    )
    p.add_argument("--out", required=True, help="file to write (e.g. model.onnx, model.pt2)")
    p.add_argument("--opset", type=int, default=20, help="ONNX opset (default: 20)")
    p.add_argument("--data-dir", help="where the digits are, if not where the run found them")
    p.add_argument("--batch-size", type=int, default=500, help="images per call of the exported file (default: 500)")
    p.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    """``stnkit export``: prints where the file went and how close it is to PyTorch."""
    from .train.rundir import recover

    run = Path(args.run)
    recover(run.parent if run.suffix == ".pt" else run)  # a run a killed --overwrite set aside (rundir rule)
    r = export_run(
        args.run, args.format, args.out, data_dir=args.data_dir, batch_size=args.batch_size, opset=args.opset
    )  # ExportError: one line, like the other user errors (cli.USER_ERRORS)
    error = f", {r['scored_on']} error {r['metrics']['error']:.2f}%" if "error" in r["metrics"] else ""
    print(
        f"wrote {r['path']} ({r['format']}); on {r['n']} {r['scored_on']} images the exported model's largest "
        f"output difference is {r['max_diff']:.2e}, its predictions agree {r['agreement']:.2f}%{error}"
    )
    return 0
