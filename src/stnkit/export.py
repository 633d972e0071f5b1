"""Export a spatial transformer (or any model holding one) to ONNX or to a ``torch.export`` program.

Both go through ``torch.export`` (the ONNX exporter with ``dynamo=True`` does too), with the batch
dimension dynamic: the exported graph runs on any batch size, not only the example's.

* Every 2-D family (``translation``, ``attention``, ``similarity``, ``affine``, ``projective``,
  ``tps``), parallel heads, ``fill``, ``output_size``, ``IterativeSpatialTransformer`` and every
  sampling option but ``antialias=True`` export to both. ``antialias=True`` chooses its pyramid
  levels from the data, which no static graph holds: :class:`ExportError` says so.
* 3-D families (``affine3d``) export to ``torch.export`` and to ONNX at opset 20 or later (where
  ``GridSample`` takes volumes); at opset 18 or 19 :func:`export_onnx` raises
  :class:`ExportError`. PyTorch's ONNX exporter writes opset 18 or later (``GridSample`` exists
  from 16, but older opsets are out of its reach).
* While exporting, the fast paths (:mod:`stnkit.fastpath`: custom autograd functions, caches,
  a data-dependent branch near the projective horizon) step aside for the reference graph of
  plain operators, which computes the same numbers; the non-finite theta check
  (:mod:`stnkit.errors`) is left out of the exported graph.
* TorchScript (``torch.jit.script`` / ``torch.jit.trace``) is deprecated in this PyTorch and
  not supported: use :func:`export_program` (``torch.export``) instead.

Example:
    >>> import torch, stnkit
    >>> from stnkit.export import export_program
    >>> st = stnkit.SpatialTransformer(stnkit.fc_localisation((1, 12, 12)), "affine").eval()
    >>> program = export_program(st, torch.rand(2, 1, 12, 12))
    >>> x = torch.rand(5, 1, 12, 12)                      # another batch size than the example's
    >>> torch.allclose(program.module()(x), st(x), atol=1e-5)
    True
"""

from __future__ import annotations

import inspect
import logging
import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ._io import atomic_open, atomic_write
from .errors import TORCHSCRIPT_MESSAGE, ExportError, torchscript_unsupported

__all__ = ["ExportError", "MIN_OPSET", "MIN_OPSET_3D", "export_onnx", "export_program", "load_program",
           "torchscript_unsupported"]

#: The first ONNX opset that the exporter (``dynamo=True``) writes; ``GridSample`` (2-D) exists from 16.
MIN_OPSET = 18
#: The first ONNX opset whose ``GridSample`` takes volumes (3-D families).
MIN_OPSET_3D = 20

def _as_tuple(example: Tensor | tuple[Tensor, ...], dynamic_batch: bool) -> tuple[Tensor, ...]:
    """The example as a tuple of inputs; one sample is traced as two when the batch is dynamic (the
    exporter would fix a batch of 1 in the graph)."""
    args = (example,) if isinstance(example, Tensor) else tuple(example)
    if not args or not all(isinstance(a, Tensor) for a in args):
        got = type(example).__name__ if not isinstance(example, tuple) else [type(a).__name__ for a in example]
        raise TypeError(f"example: expected a tensor or a tuple of tensors (the module's inputs), got {got}")
    batch = {a.shape[0] for a in args if a.dim() > 0}
    if len(batch) != 1:
        raise ValueError(f"example: expected inputs sharing one batch size (dimension 0), got shapes "
                         f"{[tuple(a.shape) for a in args]}")
    if dynamic_batch and batch == {1}:
        args = tuple(torch.cat([a, a]) if a.dim() > 0 else a for a in args)  # (2, ...)
    return args


def _dynamic_shapes(module: nn.Module, args: tuple[Tensor, ...], dynamic_batch: bool) -> tuple | None:
    """Dimension 0 of every input as one dynamic ``batch``, in the structure of ``module.forward``'s
    signature (``forward(self, *inputs)`` takes them as one tuple)."""
    if not dynamic_batch:
        return None
    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    specs = tuple({0: batch} if a.dim() > 0 else None for a in args)
    params = list(inspect.signature(module.forward).parameters.values())
    if params and params[0].kind is inspect.Parameter.VAR_POSITIONAL:
        return (specs,)
    return specs


def _check_module(module: nn.Module) -> None:
    if not isinstance(module, nn.Module):
        raise TypeError(f"module: expected an nn.Module, got {type(module).__name__}")
    if module.training:
        raise ValueError(f"module: expected eval mode (call module.eval() first: batch norm and dropout "
                         f"export their inference behaviour), got {type(module).__name__} in training mode")


def _is_3d(module: nn.Module) -> bool:
    from .module import SpatialTransformer

    return any(isinstance(m, SpatialTransformer) and m.transform.ndim == 3 for m in module.modules())


def _check_exportable(module: nn.Module) -> None:
    """What is known not to export, refused with the reason before the exporter's own message."""
    from .module import SpatialTransformer

    for name, m in module.named_modules():
        if isinstance(m, SpatialTransformer) and getattr(m, "antialias", False):
            raise ExportError(f"module: {name or type(module).__name__} samples with antialias=True, which picks "
                              f"its pyramid levels from the data (no static graph); export a copy with "
                              f"antialias=False (the same weights) instead")


def _export(module: nn.Module, args: tuple[Tensor, ...], dynamic_batch: bool) -> torch.export.ExportedProgram:
    _check_exportable(module)
    try:
        with _quiet("torch.export"):
            return torch.export.export(module, args, dynamic_shapes=_dynamic_shapes(module, args, dynamic_batch))
    except Exception as err:  # the exporter raises many types; one typed error for the caller
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ExportError(f"module: torch.export could not export {type(module).__name__} with inputs of shapes "
                          f"{[tuple(a.shape) for a in args]}: {type(err).__name__}: {first}") from err


def export_program(module: nn.Module, example: Tensor | tuple[Tensor, ...], path: str | os.PathLike | None = None,
                   *, dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """Exports ``module`` with ``torch.export``, and saves the program to ``path`` if given.

    Args:
        module: In eval mode; called as ``module(*example)``.
        example: Example input(s), batch first, e.g. ``(N, C, H, W)`` (one sample is traced as two).
        path: Where to save (``torch.export.save``; load with :func:`load_program`), written to a
            temporary file then renamed (:mod:`stnkit._io`).
        dynamic_batch: Export dimension 0 of every input as a dynamic batch size.

    Returns:
        The ``torch.export.ExportedProgram``; ``program.module()(*inputs)`` runs it.

    Raises:
        ExportError: What cannot be exported, with the exporter's reason.
    """
    _check_module(module)
    args = _as_tuple(example, dynamic_batch)
    program = _export(module, args, dynamic_batch)
    if path is not None:
        with atomic_open(Path(path)) as f:
            torch.export.save(program, f)
    return program


def load_program(path: str | os.PathLike) -> torch.export.ExportedProgram:
    """Loads a program saved by :func:`export_program` (``torch.export.load``)."""
    return torch.export.load(Path(path))


def export_onnx(module: nn.Module, example: Tensor | tuple[Tensor, ...], path: str | os.PathLike,
                opset: int = 20, dynamic_batch: bool = True) -> Path:
    """Exports ``module`` to an ONNX file (``torch.onnx.export(..., dynamo=True)``).

    Needs the ``onnx`` and ``onnxscript`` packages (``pip install stnkit[export]``). The graph's
    inputs are ``input0, input1, ...`` in the order of ``example``; its outputs are the module's
    outputs, flattened.

    Args:
        module: In eval mode; called as ``module(*example)``.
        example: Example input(s), batch first (one sample is traced as two).
        path: The ``.onnx`` file, written to a temporary file then renamed.
        opset: ONNX opset, at least 18 (the exporter's first), at least 20 for 3-D families.
        dynamic_batch: Export dimension 0 of every input as a dynamic batch size.

    Returns:
        ``path``.

    Raises:
        ExportError: An opset without the operators needed, or what the exporter cannot export.
    """
    _check_module(module)
    args = _as_tuple(example, dynamic_batch)
    if not isinstance(opset, int) or isinstance(opset, bool):
        raise TypeError(f"opset: expected an int, got {type(opset).__name__}")
    if opset < MIN_OPSET:
        raise ExportError(f"opset: expected at least {MIN_OPSET} (the first opset PyTorch's ONNX exporter "
                          f"writes; GridSample needs 16), got {opset}")
    if opset < MIN_OPSET_3D and _is_3d(module):
        raise ExportError(f"opset: 3-D transforms need opset {MIN_OPSET_3D} or later (GridSample on volumes), "
                          f"got {opset}")
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter needs it; say so clearly)
    except ImportError as err:
        raise ExportError("export_onnx needs the onnx and onnxscript packages: pip install 'stnkit[export]'") from err
    program = _export(module, args, dynamic_batch)
    names = [f"input{i}" for i in range(len(args))]

    try:
        with _quiet("onnxscript", "onnx_ir", "torch.onnx"):
            onnx_program = torch.onnx.export(program, args, dynamo=True, opset_version=opset, input_names=names,
                                             optimize=True, verbose=False)
    except Exception as err:
        raise ExportError(f"module: the ONNX exporter (opset {opset}) could not convert "
                          f"{type(module).__name__}: {type(err).__name__}: {str(err).strip()[:500]}") from err
    if onnx_program is None:  # only with dynamo=False, never here
        raise ExportError("module: the ONNX exporter returned no program")
    atomic_write(Path(path), onnx_program.model_proto.SerializeToString())
    return Path(path)


@contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """The exporters' progress notes (INFO), notes on torchvision operators and a deprecation inside
    PyTorch (``LeafSpec``) are noise to the caller; errors still come through (raised)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
