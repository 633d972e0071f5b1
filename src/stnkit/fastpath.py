"""Switch between the fast paths (the default) and the reference paths.

The fast paths compute the same numbers as the reference paths (within float32 rounding) in less time:

* grids of every family: one GEMM against a cached block basis with a hand-written backward
  (:mod:`stnkit.transforms._linear`) instead of ``F.affine_grid`` or a batched ``torch.matmul``;
* sampling: see :mod:`stnkit._fast_sample`.

The reference paths are ``F.affine_grid`` for ``affine``/``affine3d`` and plain ``torch.matmul`` with
autograd for the other families; they exist for tests and for cross-checking a result. While
``torch.export`` (and so the ONNX exporter) traces a model, :func:`enabled` is ``False``: the exported
graph holds plain operators only (no custom autograd functions, caches or data-dependent branches).

Example:
    >>> import torch, stnkit
    >>> theta = torch.tensor([[1.0, 0.2, 0.1, -0.1, 0.9, 0.0]])
    >>> fast = stnkit.transforms.get("affine").grid(theta, (5, 7))
    >>> with stnkit.fastpath.disabled():
    ...     reference = stnkit.transforms.get("affine").grid(theta, (5, 7))
    >>> torch.allclose(fast, reference, atol=1e-6)
    True
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

_enabled = True


def enabled() -> bool:
    """Whether the fast paths are in use (process-wide; ``True`` unless switched off or exporting)."""
    return _enabled and not torch.compiler.is_exporting()


def set_enabled(flag: bool) -> None:
    """Switches the fast paths on or off for the whole process."""
    global _enabled
    if not isinstance(flag, bool):
        raise TypeError(f"flag: expected a bool, got {type(flag).__name__}")
    _enabled = flag


@contextmanager
def disabled() -> Iterator[None]:
    """Context manager running its body on the reference paths, then restoring the switch."""
    previous = _enabled
    set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)
