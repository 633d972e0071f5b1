"""Argument checks shared by every public entry point.

Each check raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape or
value) with a message that names the argument, what was expected and what was given.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import SupportsIndex, cast

import torch
from torch import Tensor


def _shape(x: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


def check_tensor(
    name: str,
    x: object,
    *,
    ndim: int | Sequence[int] | None = None,
    shape: str | None = None,
    floating: bool = False,
) -> Tensor:
    """Checks that ``x`` is a tensor of the given rank (and floating dtype if asked).

    Args:
        name: The argument's name, as the caller knows it.
        x: The value to check.
        ndim: The allowed number of dimensions (one int or several).
        shape: A human-readable expected shape such as ``"(N, C, H, W)"`` for the message.
        floating: Require a floating-point dtype (integer images are refused).

    Returns:
        ``x`` itself.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor of shape {shape or '?'}, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            ranks = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(
                f"{name}: expected a {ranks} tensor{' ' + shape if shape else ''}, got shape {_shape(x)} ({x.dim()}-D)"
            )
    if floating and not x.is_floating_point():
        raise TypeError(
            f"{name}: expected a floating-point tensor (float32, float64, float16 or bfloat16), "
            f"got dtype {x.dtype}; convert integer images with .float() (and scale them) first"
        )
    return x


def check_choice(name: str, value: object, choices: Iterable[str]) -> str:
    """Checks that ``value`` is one of ``choices``; the message lists them all."""
    options = list(choices)
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def check_size(name: str, size: object, ndim: int) -> tuple[int, ...]:
    """Checks an output size: ``ndim`` positive ints, ``(H, W)`` or ``(D, H, W)``."""
    labels = "(H, W)" if ndim == 2 else "(D, H, W)"
    if isinstance(size, torch.Size):
        size = tuple(size)
    if (
        not isinstance(size, (tuple, list))
        or len(size) != ndim
        or not all(_is_int(s) and operator.index(s) > 0 for s in size)
    ):
        raise ValueError(f"{name}: expected {ndim} positive ints {labels}, got {size!r}")
    return tuple(operator.index(s) for s in size)


def _is_int(value: object) -> bool:
    """An int-like value (``int``, numpy or 0-D integer tensor), not a bool."""
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.is_floating_point()):
        return False
    try:
        operator.index(cast(SupportsIndex, value))  # TypeError is the answer for non-ints
    except TypeError:
        return False
    return True


def check_positive_int(name: str, value: object, minimum: int = 1) -> int:
    """Checks that ``value`` is an int no smaller than ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {value!r}")
    return value


def check_finite(name: str, x: Tensor) -> Tensor:
    """Raises ``ValueError`` if ``x`` holds NaN or infinity (skipped while compiling)."""
    if torch.compiler.is_compiling():
        return x
    if not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()
        where = tuple(bad[0].tolist())
        raise ValueError(
            f"{name}: expected finite values, got {x.flatten()[~torch.isfinite(x.flatten())][0].item()} "
            f"at index {where} ({bad.shape[0]} non-finite entries); the localisation net has diverged "
            f"or its input holds NaN"
        )
    return x


def check_bool(name: str, value: object) -> bool:
    """Checks that a flag is a real ``bool`` (not ``0``/``1``, a string or a tensor)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool (True or False), got {value!r} ({type(value).__name__})")
    return value


def check_same_device(name: str, x: Tensor, other_name: str, other: Tensor) -> None:
    """Checks that ``x`` is on ``other``'s device (names both and both devices)."""
    if x.device != other.device:
        raise ValueError(f"{name}: expected a tensor on {other_name}'s device {other.device}, got {x.device}")


def check_same_dtype(name: str, x: Tensor, other_name: str, other: Tensor) -> None:
    """Checks that ``x`` has ``other``'s dtype (names both and both dtypes)."""
    if x.dtype != other.dtype:
        raise TypeError(f"{name}: expected {other_name}'s dtype {other.dtype}, got {x.dtype}")


def check_same_batch(name: str, x: Tensor, other_name: str, other: Tensor) -> None:
    """Checks that ``x`` and ``other`` have the same batch size (dimension 0)."""
    if x.shape[0] != other.shape[0]:
        raise ValueError(
            f"{name}: batch size {x.shape[0]} does not match {other_name}'s {other.shape[0]} "
            f"({name} shape {_shape(x)}, {other_name} shape {_shape(other)})"
        )
