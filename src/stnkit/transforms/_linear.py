"""The one operation every grid generator shares: a constant basis times per-sample coefficients.

A matrix family's grid is ``base_grid @ matrix[:, :d].T`` and a TPS grid is ``output_basis @ points``:
both are a fixed ``(P, K)`` basis times ``(N, K, D)`` coefficients.

Fast path (the default): the basis is expanded once into its block form
``kron(basis.T, I_D)`` of shape ``(K*D, P*D)`` (cached, see :func:`cached`), so the whole batch's grid
is **one** matrix product ``(N, K*D) @ (K*D, P*D)`` that writes the ``(N, P, D)`` grid directly in
its final interleaved layout; the backward pass gives the coefficient gradient as one reduction of the
grid gradient against the same block, ``(N, P*D) @ (P*D, K*D)``. A batched ``(P, K) @ (N, K, D)``
product (what autograd through ``torch.matmul`` or ``F.affine_grid`` does) runs ``N`` tiny GEMMs whose
inner dimension is ``D = 2`` and is several times slower on a CPU.

Reference path: :func:`reference_product` is the plain ``torch.matmul`` with autograd, used by the
tests and when :mod:`stnkit.fastpath` is switched off.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable

import torch
from torch import Tensor

from .. import fastpath

#: Most cached block bases kept (least recently used ones are dropped first).
CACHE_ENTRIES = 32
#: Largest block basis cached, in elements; bigger ones are rebuilt per call (they are cheap
#: next to the grid they produce).
CACHE_MAX_ELEMENTS = 1 << 24

_cache: "OrderedDict[Hashable, Tensor]" = OrderedDict()
_lock = threading.Lock()


def cached(key: Hashable, make: Callable[[], Tensor]) -> Tensor:
    """Returns ``make()`` cached under ``key`` (LRU, at most :data:`CACHE_ENTRIES` entries).

    The key must hold everything the tensor depends on (size, ``align_corners``, dtype, device, family
    options). The tensor is built outside inference mode and without autograd history, so a tensor
    first built under ``torch.inference_mode()`` can later be saved for a backward pass. Under
    ``torch.compile`` nothing is cached (the tensor is built inside the graph).
    """
    if torch.compiler.is_compiling():
        return make()
    with _lock:
        value = _cache.get(key)
        if value is not None:
            _cache.move_to_end(key)
            return value
    with torch.inference_mode(False), torch.no_grad():
        value = make()
    if value.numel() <= CACHE_MAX_ELEMENTS:
        with _lock:
            _cache[key] = value
            while len(_cache) > CACHE_ENTRIES:
                _cache.popitem(last=False)
    return value


def clear_cache() -> None:
    """Drops every cached block basis."""
    with _lock:
        _cache.clear()


def cache_keys() -> list[Hashable]:
    """The keys cached now, least recently used first (for tests and debugging)."""
    with _lock:
        return list(_cache)


def block_basis(basis: Tensor, d: int) -> Tensor:
    """``kron(basis.T, I_d)``: the ``(K*d, P*d)`` block form of a ``(P, K)`` basis.

    Row ``k*d + i`` holds basis column ``k`` in output component ``i``, so
    ``coeffs.reshape(N, K*d) @ block`` equals ``(basis @ coeffs).reshape(N, P*d)``.
    """
    eye = torch.eye(d, dtype=basis.dtype, device=basis.device)
    k, p = basis.shape[1], basis.shape[0]
    # kron written out: torch.kron fails on a one-pixel output (a (K, 1) operand).
    block = basis.transpose(0, 1)[:, None, :, None] * eye[None, :, None, :]  # (K, d, P, d)
    return block.reshape(k * d, p * d)  # (K*d, P*d)


class _BlockProduct(torch.autograd.Function):
    @staticmethod
    def forward(block: Tensor, coeffs: Tensor) -> Tensor:  # (K*D, P*D), (N, K*D) -> (N, P*D)
        return torch.mm(coeffs, block)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        block, _ = inputs
        ctx.save_for_backward(block)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:  # grad (N, P*D)
        (block,) = ctx.saved_tensors
        return None, torch.mm(grad, block.transpose(0, 1))  # (N, K*D): one reduction over P*D


def basis_product(block: Tensor, coeffs: Tensor) -> Tensor:
    """``basis @ coeffs`` for the whole batch as one GEMM, with a hand-written backward.

    Args:
        block: ``(K*D, P*D)`` from :func:`block_basis` (a constant: no gradient).
        coeffs: ``(N, K, D)``.

    Returns:
        ``(N, P, D)``, contiguous.
    """
    n, k, d = coeffs.shape
    flat = coeffs.reshape(n, k * d)  # (N, K*D)
    if block.dtype != flat.dtype:
        raise TypeError(f"coeffs: expected dtype {block.dtype} (the basis's), got {flat.dtype}")
    return _BlockProduct.apply(block, flat).view(n, block.shape[1] // d, d)  # (N, P, D)


def reference_product(basis: Tensor, coeffs: Tensor) -> Tensor:
    """The same product by plain ``torch.matmul`` and autograd (the reference path).

    Args:
        basis: ``(P, K)``.
        coeffs: ``(N, K, D)``.

    Returns:
        ``(N, P, D)``.
    """
    return torch.matmul(basis, coeffs)


def linear_grid(points: Tensor, size: tuple[int, ...], key: Hashable, output_basis: Callable[[], Tensor]) -> Tensor:
    """The grid ``output_basis() @ points`` of a family that is linear in its control points.

    Fast path: one GEMM against the block basis cached under ``key`` (which must hold everything the
    basis depends on); reference path (:mod:`stnkit.fastpath` off): :func:`reference_product`.

    Args:
        points: ``(N, K, D)`` per-sample coefficients.
        size: The output size, ``P = prod(size)``.
        key: Cache key of the block basis.
        output_basis: Builds (or fetches) the ``(P, K)`` basis.

    Returns:
        ``(N, *size, D)``.
    """
    n, _, d = points.shape
    if fastpath.enabled():
        grid = basis_product(cached(key, lambda: block_basis(output_basis(), d)), points)  # (N, P, D)
    else:
        grid = reference_product(output_basis(), points)  # (N, P, D)
    return grid.view(n, *size, d)
