"""The one operation every grid generator shares: a constant basis times per-sample coefficients.

A matrix family's grid is ``base_grid @ matrix[:, :d].T`` and a TPS grid is ``output_basis @ points``:
both are a fixed ``(P, K)`` basis times ``(N, K, D)`` coefficients. Its backward pass gives the
coefficient gradient as one reduction of the grid gradient against the basis.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class _BasisProduct(torch.autograd.Function):
    @staticmethod
    def forward(basis: Tensor, coeffs: Tensor) -> Tensor:  # (P, K), (N, K, D) -> (N, P, D)
        return torch.matmul(basis, coeffs)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
        basis, _ = inputs
        ctx.save_for_backward(basis)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor]:  # grad (N, P, D)
        (basis,) = ctx.saved_tensors
        return None, torch.matmul(basis.transpose(0, 1), grad)  # (N, K, D)


def basis_product(basis: Tensor, coeffs: Tensor) -> Tensor:
    """``basis @ coeffs`` with a hand-written backward (the basis is a constant).

    Args:
        basis: ``(P, K)``, no gradient.
        coeffs: ``(N, K, D)``.

    Returns:
        ``(N, P, D)``.
    """
    return _BasisProduct.apply(basis, coeffs)
