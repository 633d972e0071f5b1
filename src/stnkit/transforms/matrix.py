"""Families whose warp is one homogeneous matrix: translation, attention, similarity, affine,
projective (2-D) and affine3d (3-D).

Every family maps ``theta`` to a full homogeneous matrix ``(N, d+1, d+1)`` with :meth:`matrix`;
the grid is one product of the cached base grid with that matrix (fast path: one GEMM against the
cached block basis, see :mod:`stnkit.transforms._linear`; reference path: ``F.affine_grid`` for
``affine``/``affine3d``, plain ``torch.matmul`` for the others; :mod:`stnkit.fastpath` selects).
A projective grid adds only the division. Each family is closed under composition and inversion, so
:meth:`compose` and :meth:`inverse` return parameters of the same family.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import fastpath
from .._validate import check_bool, check_same_batch, check_same_device, check_same_dtype, check_tensor
from ..coords import base_grid
from ..errors import check_theta
from ._linear import basis_product, block_basis, cached, reference_product
from .base import Transform

#: Smallest magnitude allowed for the projective homogeneous coordinate (keeps grids finite).
PROJECTIVE_EPS = 1e-6


class MatrixTransform(Transform):
    """A family given by a homogeneous matrix ``(N, d+1, d+1)`` mapping output to input points."""

    has_matrix: ClassVar[bool] = True
    projective: ClassVar[bool] = False

    @abstractmethod
    def _matrix(self, theta: Tensor) -> Tensor:
        """``(N, P)`` -> ``(N, d+1, d+1)`` without validation."""

    @abstractmethod
    def _params(self, matrix: Tensor) -> Tensor:
        """``(N, d+1, d+1)`` -> ``(N, P)`` without validation (the family's own form assumed)."""

    def matrix(self, theta: Tensor) -> Tensor:
        """The homogeneous matrix of each warp.

        Args:
            theta: ``(N, num_params)``.

        Returns:
            ``(N, 3, 3)`` (``(N, 4, 4)`` in 3-D); applied to a homogeneous output point
            ``(x, y, 1)`` it gives the input point (after division by the last coordinate for
            ``projective``).
        """
        return self._matrix(self._check_theta(theta))

    def from_matrix(self, matrix: Tensor, *, strict: bool = True) -> Tensor:
        """Parameters ``(N, num_params)`` of a matrix of this family (inverse of :meth:`matrix`).

        Args:
            matrix: ``(N, d+1, d+1)``.
            strict: Refuse a matrix that the family cannot represent: one whose entries differ from
                ``matrix(from_matrix(matrix))`` by more than :func:`matrix_tolerance` (``sqrt(eps)``
                of the dtype times the largest entry, at least 1: float32 3.5e-4, float64 1.5e-8,
                enough for round trips through :meth:`compose` and :meth:`inverse`). ``False``:
                return the family's projection of the matrix (e.g. ``similarity`` keeps the first
                column's scale and angle) without checking.

        Raises:
            ValueError: ``strict`` and some samples are outside the family (the message names them
                and the largest deviation), or the matrix holds NaN or infinity.
        """
        d = self.ndim + 1
        if not isinstance(matrix, Tensor) or matrix.dim() != 3 or matrix.shape[1:] != (d, d):
            got = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
            raise ValueError(f"matrix: expected shape (N, {d}, {d}), got {got}")
        check_tensor("matrix", matrix, floating=True)
        check_bool("strict", strict)
        finite = torch.isfinite(matrix.detach()).flatten(1).all(1)
        if not bool(finite.all()):
            raise ValueError(f"matrix: expected finite values, got NaN or infinity in samples {_samples(~finite)}")
        if self.projective:
            small = matrix.detach()[:, 2, 2].abs() < PROJECTIVE_EPS
            if bool(small.any()):
                raise ValueError(
                    f"matrix: expected a bottom-right entry of magnitude >= {PROJECTIVE_EPS} (it is "
                    f"normalised to 1), got {matrix[small][0, 2, 2].item()} in samples {_samples(small)}"
                )
        params = self._params(matrix)
        if strict:
            target = matrix / matrix[:, 2:, 2:] if self.projective else matrix
            deviation = (self._matrix(params) - target).detach().abs().flatten(1).amax(1)  # (N,)
            tol = matrix_tolerance(target)  # (N,)
            bad = deviation > tol
            if bool(bad.any()):
                i = int(bad.nonzero()[0])
                raise ValueError(
                    f"matrix: samples {_samples(bad)} are not {self.name!r} matrices: they differ from the nearest "
                    f"one by up to {deviation[i].item():.3g} (sample {i}; tolerance {tol[i].item():.3g}); pass "
                    f"strict=False to project them onto the family, or use a more general family"
                )
        return params

    def inverse(self, theta: Tensor) -> Tensor:
        """Parameters of the inverse warp: ``matrix(inverse(theta)) == inv(matrix(theta))``.

        Raises:
            ValueError: Some warps are singular (to working precision); the message names the samples.
        """
        m = self.matrix(theta)
        check_theta("theta", theta)  # the non-finite policy of stnkit.errors
        inv, info = torch.linalg.inv_ex(m)
        eye = torch.eye(m.shape[1], dtype=m.dtype, device=m.device)
        residual = (m.detach() @ inv.detach() - eye).abs().flatten(1).amax(1)  # (N,)
        bad = (info != 0) | ~(residual <= matrix_tolerance(m))
        if bool(bad.any()):
            raise ValueError(
                f"theta: samples {_samples(bad)} are singular warps (their {self.name!r} matrix has no "
                f"inverse to {m.dtype} precision), e.g. {theta[bad][0].tolist()}"
            )
        return self._params(inv)

    def compose(self, first: Tensor, second: Tensor) -> Tensor:
        """Parameters of one warp equal to transformer ``first`` followed by transformer ``second``.

        Applying ``first`` to an image and then ``second`` to the result reads, for an output point
        ``p``, the original image at ``M_first @ M_second @ p``.

        Args:
            first: ``(N, num_params)``, the warp applied first.
            second: ``(N, num_params)``, the warp applied to the first one's output.

        Returns:
            ``(N, num_params)``.
        """
        self._check_theta(first, "first")
        self._check_theta(second, "second")
        check_same_batch("second", second, "first", first)
        check_same_dtype("second", second, "first", first)
        check_same_device("second", second, "first", first)
        return self._params(self._matrix(first) @ self._matrix(second))

    def grid(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        if not fastpath.enabled():
            return self.reference_grid(theta, size, align_corners)
        size = self._check_grid(self._check_theta(theta), size, align_corners)
        rows = self._rows(theta)  # (N, d, ndim+1), d = ndim (+1 if projective)
        block = _block(size, align_corners, rows.shape[1], rows.dtype, rows.device)  # (K*d, P*d), K = ndim+1
        hom = basis_product(block, rows.transpose(1, 2))  # (N, P, d)
        return self._divide(hom).reshape(rows.shape[0], *size, self.ndim)  # (N, H, W, 2) / (N, D, H, W, 3)

    def _rows(self, theta: Tensor) -> Tensor:
        """The rows of the homogeneous matrix that the grid needs: ``(N, d, ndim+1)``."""
        m = self._matrix(theta)  # (N, ndim+1, ndim+1)
        return m if self.projective else m[:, : self.ndim]

    def reference_grid(self, theta: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
        """The same grid by the reference path: ``F.affine_grid`` for ``affine``/``affine3d``
        (whose theta is the matrix's top rows), plain ``torch.matmul`` with autograd otherwise."""
        m = self.matrix(theta)  # (N, d+1, d+1)
        size = self._check_grid(theta, size, align_corners)
        if isinstance(self, (Affine, Affine3d)):
            rows = theta.reshape(m.shape[0], self.ndim, self.ndim + 1)  # (N, d, d+1)
            return F.affine_grid(rows, [m.shape[0], 1, *size], align_corners=align_corners)
        base = base_grid(size, align_corners, dtype=m.dtype, device=m.device)  # (P, d+1)
        points = self._apply_matrix(base, m)  # (N, P, d)
        return points.reshape(m.shape[0], *size, self.ndim)  # (N, H, W, 2) / (N, D, H, W, 3)

    def warp_points(self, theta: Tensor, points: Tensor) -> Tensor:
        m = self.matrix(theta)
        points = self._check_points(theta, points)  # (N, P, d)
        ones = torch.ones_like(points[..., :1])
        hom = torch.cat([points, ones], dim=-1)  # (N, P, d+1)
        return self._divide(hom @ m.transpose(1, 2))

    def _apply_matrix(self, base: Tensor, m: Tensor) -> Tensor:  # not nn.Module._apply
        rows = m if self.projective else m[:, : self.ndim]  # (N, d or d+1, d+1)
        return self._divide(reference_product(base, rows.transpose(1, 2)))  # (N, P, d)

    def _divide(self, hom: Tensor) -> Tensor:
        if not self.projective:
            return hom[..., : self.ndim]
        w = hom[..., self.ndim :]
        sign = torch.where(w < 0, -1.0, 1.0).to(w.dtype)
        w = torch.where(w.abs() < PROJECTIVE_EPS, sign * PROJECTIVE_EPS, w)
        return hom[..., : self.ndim] / w


def matrix_tolerance(matrix: Tensor) -> Tensor:
    """Per-sample tolerance of :meth:`MatrixTransform.from_matrix`: ``sqrt(eps) * max(1, max |entry|)``.

    Args:
        matrix: ``(N, d+1, d+1)``.

    Returns:
        ``(N,)``.
    """
    scale = matrix.detach().abs().flatten(1).amax(1).clamp_min(1.0) if matrix.shape[0] else matrix.new_ones(0)
    return scale * math.sqrt(torch.finfo(matrix.dtype).eps)


def _samples(mask: Tensor) -> list[int]:
    """The batch indices where ``mask`` ``(N,)`` is true."""
    return [int(i) for i in mask.nonzero().flatten().tolist()]


def _block(size: tuple[int, ...], align_corners: bool, d: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The cached block form ``(K*d, P*d)`` of the base grid ``(P, K)`` for ``d`` output rows."""
    key = ("matrix", size, bool(align_corners), d, dtype, device)
    return cached(key, lambda: block_basis(base_grid(size, align_corners, dtype=dtype, device=device), d))


def _from_rows(theta: Tensor, rows: Tensor) -> Tensor:
    """Stacks the top ``d`` rows ``(N, d, d+1)`` over ``[0 .. 0 1]`` into ``(N, d+1, d+1)``."""
    n, d = rows.shape[0], rows.shape[1]
    bottom = torch.zeros(n, 1, d + 1, dtype=rows.dtype, device=rows.device)
    bottom[:, 0, d] = 1
    return torch.cat([rows, bottom], dim=1)


class Translation(MatrixTransform):
    """Translation only: ``theta = (tx, ty)``; reads the input at ``(x + tx, y + ty)``."""

    name = "translation"
    num_params = 2

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.zeros(2, dtype=dtype, device=device)

    def _matrix(self, theta: Tensor) -> Tensor:
        one, zero = torch.ones_like(theta[:, 0]), torch.zeros_like(theta[:, 0])
        rows = torch.stack([one, zero, theta[:, 0], zero, one, theta[:, 1]], dim=1)  # (N, 6)
        return _from_rows(theta, rows.view(-1, 2, 3))

    def _params(self, matrix: Tensor) -> Tensor:
        return matrix[:, :2, 2]


class Attention(MatrixTransform):
    """Isotropic scale and translation (the paper's attention): ``theta = (s, tx, ty)``.

    Reads the input at ``(s x + tx, s y + ty)``: ``s < 1`` zooms in on a window of half-size ``s``
    centred on ``(tx, ty)``.
    """

    name = "attention"
    num_params = 3

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0], dtype=dtype, device=device)

    def _matrix(self, theta: Tensor) -> Tensor:
        s, tx, ty = theta.unbind(1)
        zero = torch.zeros_like(s)
        rows = torch.stack([s, zero, tx, zero, s, ty], dim=1)  # (N, 6)
        return _from_rows(theta, rows.view(-1, 2, 3))

    def _params(self, matrix: Tensor) -> Tensor:
        return torch.stack([matrix[:, 0, 0], matrix[:, 0, 2], matrix[:, 1, 2]], dim=1)


class Similarity(MatrixTransform):
    """Scale, rotation and translation: ``theta = (s, angle, tx, ty)``, angle in radians.

    Matrix ``[[s cos a, -s sin a, tx], [s sin a, s cos a, ty]]``.
    """

    name = "similarity"
    num_params = 4

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=dtype, device=device)

    def _matrix(self, theta: Tensor) -> Tensor:
        s, a, tx, ty = theta.unbind(1)
        c, si = s * torch.cos(a), s * torch.sin(a)
        rows = torch.stack([c, -si, tx, si, c, ty], dim=1)  # (N, 6)
        return _from_rows(theta, rows.view(-1, 2, 3))

    def _params(self, matrix: Tensor) -> Tensor:
        c, si = matrix[:, 0, 0], matrix[:, 1, 0]
        s = torch.sqrt(c * c + si * si)
        return torch.stack([s, torch.atan2(si, c), matrix[:, 0, 2], matrix[:, 1, 2]], dim=1)


class Affine(MatrixTransform):
    """General 2-D affine: ``theta`` is the row-major ``2 x 3`` matrix, as in ``F.affine_grid``."""

    name = "affine"
    num_params = 6

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], dtype=dtype, device=device)

    def _matrix(self, theta: Tensor) -> Tensor:
        return _from_rows(theta, theta.view(-1, 2, 3))

    def _rows(self, theta: Tensor) -> Tensor:
        return theta.reshape(-1, 2, 3)  # (N, 2, 3)

    def _params(self, matrix: Tensor) -> Tensor:
        return matrix[:, :2, :].reshape(-1, 6)


class Projective(MatrixTransform):
    """Plane projective (homography): ``theta`` is the row-major ``3 x 3`` matrix without its
    last entry, which is fixed to 1.

    The homogeneous coordinate is kept at least ``PROJECTIVE_EPS`` in magnitude, so points near
    the horizon map far outside the image (and read padding) instead of becoming NaN or inf.
    """

    name = "projective"
    num_params = 8
    projective = True

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0], dtype=dtype, device=device)

    def _matrix(self, theta: Tensor) -> Tensor:
        one = torch.ones_like(theta[:, :1])
        return torch.cat([theta, one], dim=1).view(-1, 3, 3)

    def _params(self, matrix: Tensor) -> Tensor:
        return (matrix / matrix[:, 2:, 2:]).reshape(-1, 9)[:, :8]


class Affine3d(MatrixTransform):
    """3-D affine for volumes ``(N, C, D, H, W)``: ``theta`` is the row-major ``3 x 4`` matrix
    acting on ``(x, y, z, 1)``, as in 5-D ``F.affine_grid``."""

    name = "affine3d"
    ndim = 3
    num_params = 12

    def identity(self, *, dtype=None, device=None) -> Tensor:
        return torch.eye(3, 4, dtype=dtype, device=device).reshape(12)

    def _matrix(self, theta: Tensor) -> Tensor:
        return _from_rows(theta, theta.view(-1, 3, 4))

    def _rows(self, theta: Tensor) -> Tensor:
        return theta.reshape(-1, 3, 4)  # (N, 3, 4)

    def _params(self, matrix: Tensor) -> Tensor:
        return matrix[:, :3, :].reshape(-1, 12)
