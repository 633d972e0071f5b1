"""Typed errors of stnkit, and the one policy for non-finite theta.

Callers catch these types, never a message text.

**Non-finite theta** (NaN or infinity regressed by a localisation net that has diverged, or fed NaN):

* on the CPU, :func:`check_theta` raises :class:`NonFiniteThetaError` at the call (``stnkit.warp``,
  ``SpatialTransformer.forward``), naming the first bad sample;
* on an accelerator (CUDA, ...) nothing synchronises per call: :func:`check_theta` ORs a flag that
  stays on the device, and :func:`raise_pending` raises the same error where the caller already
  synchronises (the trainer calls it each step when it reads the loss). A device-side assert is
  never used: it would poison the CUDA context, so no checkpoint could be saved afterwards;
* under ``torch.compile``, ``torch.export``, tracing and CUDA-graph capture the check is skipped.

Example:
    >>> import torch, stnkit
    >>> from stnkit.errors import NonFiniteThetaError
    >>> theta = torch.tensor([[1.0, 0, 0, 0, float("nan"), 0]])
    >>> try:
    ...     stnkit.warp(torch.rand(1, 1, 4, 4), theta)
    ... except NonFiniteThetaError as err:
    ...     print(err.samples)
    (0,)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["AllocationTooLargeError", "ExportError", "NonFiniteThetaError", "check_allocation", "check_theta",
           "max_allocation_bytes", "raise_pending", "set_max_allocation_bytes"]

# device -> 0-dim bool tensor on that device: "some theta since the last raise_pending was non-finite"
_PENDING: dict[torch.device, Tensor] = {}


class NonFiniteThetaError(ValueError):
    """theta holds NaN or infinity.

    Attributes:
        name: The argument that held it (``"theta"``).
        device: Where it was found.
        samples: The batch indices of the bad samples when known at the call (CPU), else ``None``
            (found later, at a synchronisation point, on an accelerator).
    """

    def __init__(self, message: str, *, name: str = "theta", device: torch.device | None = None,
                 samples: tuple[int, ...] | None = None) -> None:
        super().__init__(message)
        self.name, self.device, self.samples = name, device, samples

    def __reduce__(self):  # picklable across processes (DDP, DataLoader workers)
        return (_rebuild, (str(self), self.name, self.device, self.samples))


class ExportError(RuntimeError):
    """A model (or an option of it) that cannot be exported as asked: an ONNX opset without the
    operators it needs, TorchScript (deprecated: use ``torch.export``), or what the exporter refuses
    (its reason is in the message). See :mod:`stnkit.export`."""


TORCHSCRIPT_MESSAGE = (
    "TorchScript (torch.jit.script / torch.jit.trace) is deprecated in this PyTorch and stnkit does not "
    "support it; export with torch.export instead: stnkit.export.export_program(model, example, path) "
    "(load with torch.export.load), or to ONNX with stnkit.export.export_onnx(model, example, path)")


def torchscript_unsupported(*_: object, **__: object) -> None:
    """Raises :class:`ExportError` pointing to ``torch.export`` (TorchScript is deprecated).

    Raises:
        ExportError: Always.
    """
    raise ExportError(TORCHSCRIPT_MESSAGE)


def _rebuild(message: str, name: str, device: torch.device | None, samples: tuple[int, ...] | None):
    return NonFiniteThetaError(message, name=name, device=device, samples=samples)


def _skip() -> bool:
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def check_theta(name: str, theta: Tensor) -> None:
    """Applies the non-finite policy to ``theta`` (see the module docstring).

    Args:
        name: Argument name for the message.
        theta: ``(N, P)`` (or any shape whose first dimension is the batch).

    Raises:
        NonFiniteThetaError: On the CPU, at once; naming the bad samples and the first bad value.
    """
    if _skip() or theta.device.type == "meta":
        return
    if theta.device.type != "cpu":
        bad = ~torch.isfinite(theta.detach()).all()  # 0-dim, stays on the device: no sync
        flag = _PENDING.get(theta.device)
        _PENDING[theta.device] = bad if flag is None else flag | bad
        return
    finite = torch.isfinite(theta.detach())
    if bool(finite.all()):
        return
    rows = finite.reshape(finite.shape[0], -1).all(dim=1) if theta.dim() else finite.reshape(1)
    samples = tuple(int(i) for i in (~rows).nonzero().flatten().tolist())
    index = tuple((~finite).nonzero()[0].tolist())
    value = theta.detach()[index].item() if theta.dim() else theta.item()
    raise NonFiniteThetaError(
        f"{name}: expected finite values, got {value} at index {index} ({int((~finite).sum())} non-finite "
        f"entries, samples {list(samples)}); the localisation net has diverged or its input holds NaN",
        name=name, device=theta.device, samples=samples)


def raise_pending(device: torch.device | str | None = None) -> None:
    """Raises :class:`NonFiniteThetaError` if a theta checked on an accelerator since the last call
    was non-finite; clears the flag either way. Synchronises with each device that has a flag (one
    scalar read), so call it where the caller synchronises anyway (e.g. reading the loss).

    Args:
        device: Only this device's flag; default: every device's.
    """
    if device is None:
        devices = list(_PENDING)
    else:
        want = torch.device(device)
        devices = [d for d in _PENDING if d == want or (want.index is None and d.type == want.type)]
    bad = []
    for dev in devices:
        flag = _PENDING.pop(dev, None)
        if flag is not None and bool(flag):
            bad.append(dev)
    if bad:
        where = ", ".join(str(d) for d in bad)
        raise NonFiniteThetaError(
            f"theta: expected finite values, got NaN or infinity on {where} in a forward pass since the last "
            f"check; the localisation net has diverged or its input holds NaN", device=bad[0])


# -- allocation limit -------------------------------------------------------------------------------
#: Default largest single tensor stnkit allocates for a grid or an output (bytes); see
#: :func:`set_max_allocation_bytes`.
DEFAULT_MAX_ALLOCATION_BYTES = 32 * 2**30
_max_allocation_bytes: int | None = DEFAULT_MAX_ALLOCATION_BYTES


class AllocationTooLargeError(ValueError):
    """A grid or output would need more memory than :func:`max_allocation_bytes` allows.

    Attributes:
        name: What would have been allocated (``"output"``, ``"grid"``, ...).
        requested: Bytes it would need.
        limit: The limit in force.
    """

    def __init__(self, message: str, *, name: str, requested: int, limit: int) -> None:
        super().__init__(message)
        self.name, self.requested, self.limit = name, requested, limit

    def __reduce__(self):
        return (_rebuild_allocation, (str(self), self.name, self.requested, self.limit))


def _rebuild_allocation(message: str, name: str, requested: int, limit: int) -> "AllocationTooLargeError":
    return AllocationTooLargeError(message, name=name, requested=requested, limit=limit)


def set_max_allocation_bytes(limit: int | None) -> None:
    """Sets the largest grid or output stnkit allocates in one tensor (``None``: no limit).

    Args:
        limit: Bytes, a positive int, or ``None``.
    """
    global _max_allocation_bytes
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0):
        raise ValueError(f"limit: expected a positive int (bytes) or None, got {limit!r}")
    _max_allocation_bytes = limit


def max_allocation_bytes() -> int | None:
    """The limit set by :func:`set_max_allocation_bytes` (default ``DEFAULT_MAX_ALLOCATION_BYTES``)."""
    return _max_allocation_bytes


def check_allocation(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """Raises :class:`AllocationTooLargeError` if a tensor of ``shape`` and ``dtype`` exceeds the limit."""
    limit = _max_allocation_bytes
    if limit is None or _skip():  # compiling or exporting: int(size) would fix a dynamic batch size
        return
    count = 1
    for s in shape:
        count *= int(s)
    requested = count * (torch.finfo(dtype).bits // 8 if dtype.is_floating_point else torch.iinfo(dtype).bits // 8)
    if requested > limit:
        raise AllocationTooLargeError(
            f"{name}: shape {tuple(int(s) for s in shape)} in {dtype} needs {_bytes(requested)}, above the limit "
            f"of {_bytes(limit)}; use a smaller size or batch, or raise the limit with "
            f"stnkit.errors.set_max_allocation_bytes()", name=name, requested=requested, limit=limit)


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit} ({n} bytes)"
    return f"{n} bytes"
