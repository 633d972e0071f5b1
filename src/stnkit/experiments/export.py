"""``stnkit export RUN``: a trained run's model to ONNX or to a ``torch.export`` program, checked on
the run's test images in the runtime that will serve it.

Example (a run trained by ``stnkit train --out runs/st``)::

    result = export_run("runs/st", "onnx", "st.onnx")
    result["max_diff"], result["agreement"]   # largest |logit difference|, % equal predictions
"""

from __future__ import annotations

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
def export_run(run: str | Path, fmt: str, out: str | Path, *, data_dir: str | None = None, batch_size: int = 500,
               opset: int = 20) -> dict[str, Any]:
    """Exports a run's model and runs the exported file on the run's test images.

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
        ``{"path", "format", "n", "max_diff", "agreement", "error"}``: the largest absolute difference
        of the logits (exported vs PyTorch), the % of test images whose predicted class agrees, and
        the exported model's test error %.
    """
    from .train.evaluate import load_run, run_test_set

    if fmt == "torchscript":
        torchscript_unsupported()
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    model, config = load_run(run)
    test = run_test_set(config, data_dir)
    out = Path(out)
    run_exported: Callable[[Tensor], Tensor] | None = None
    max_diff, agree, correct, n = 0.0, 0, 0, 0
    for x, y in test.batches(0, batch_size):
        if run_exported is None:
            run_exported = _runner(model, fmt, x[:2], out, opset)
        got, want = run_exported(x), model(x)  # (n, classes) logits
        max_diff = max(max_diff, float((got - want).abs().max()))
        agree += int((got.argmax(1) == want.argmax(1)).sum())
        correct += int((got.argmax(1) == y).sum())
        n += len(y)
    if n == 0:
        raise ValueError(f"run: the test set of {run} holds no images")
    return {"path": str(out), "format": fmt, "n": n, "max_diff": max_diff, "agreement": 100.0 * agree / n,
            "error": 100.0 * (n - correct) / n}
