"""Dense displacement and velocity fields: integration, Jacobians, composition, unit conversion.

A **field** here is a displacement (or a stationary velocity) in normalised units, planar:
``(N, 2, h, w)`` with channel 0 = x (along the width), 1 = y, or ``(N, 3, d, h, w)`` with
channel 2 = z (see :mod:`stnkit.coords`). Its nodes sit at the pixel centres of the chosen
``align_corners`` convention, and the warp it stands for reads, for the output point ``p``, the input
point ``p + u(p)`` (the convention of the ``displacement`` and ``velocity`` families).

Padding while sampling a field (scaling and squaring, :func:`compose_fields`): ``"border"`` by
default, i.e. beyond the image the displacement of the nearest border node is used. That keeps a
constant field a translation everywhere, border pixels included; zero padding (MONAI's
``DVF2DDF``, VoxelMorph's ``VecInt``) pulls the displacement towards 0 near the borders instead.
``padding="zeros"`` reproduces those libraries exactly.

Voxel units (:func:`to_voxel`, :func:`from_voxel`): MONAI (``Warp``, ``DVF2DDF``) and VoxelMorph
(``SpatialTransformer``, ``VecInt``) share one convention: displacements in voxels, channel ``i``
along spatial tensor axis ``i`` (``(H, W)`` / ``(D, H, W)`` order, so the reverse of ours), sampled
with ``align_corners=True``. A voxel displacement ``v`` along an axis of ``n`` voxels is
``v * 2 / (n - 1)`` normalised units with ``align_corners=True`` and ``v * 2 / n`` with
``align_corners=False``; both read the same voxel positions, so a warp converted either way equals
theirs when it is sampled with the same ``align_corners``.

Example:
    >>> import torch
    >>> from stnkit import fields
    >>> v = torch.zeros(1, 2, 8, 8); v[:, 0] = 0.25           # constant velocity along x
    >>> u = fields.integrate_velocity(v)                       # a translation by 0.25
    >>> bool(torch.allclose(u, v, atol=1e-6))
    True
    >>> float(fields.folding_fraction(u)[0])
    0.0
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validate import check_choice, check_positive_int, check_tensor
from .coords import base_grid
from .errors import check_theta

__all__ = [
    "check_field", "integrate_velocity", "invert_field", "compose_fields", "jacobian_determinant",
    "folding_fraction", "resize_field", "sample_field", "to_voxel", "from_voxel",
]

PADDINGS = ("border", "zeros", "reflection")
CONVENTIONS = ("monai", "voxelmorph")


def check_field(name: str, field: object, ndim: int | None = None, *, finite: bool = True) -> Tensor:
    """Checks a field ``(N, 2, h, w)`` or ``(N, 3, d, h, w)`` (``ndim`` spatial axes if given).

    Non-finite values follow the policy of :mod:`stnkit.errors`
    (:class:`~stnkit.errors.NonFiniteThetaError` on the CPU) when ``finite``.
    """
    ranks = (ndim + 2,) if ndim else (4, 5)
    shape = {4: "(N, 2, h, w)", 5: "(N, 3, d, h, w)"}
    check_tensor(name, field, ndim=ranks, shape=" or ".join(shape[r] for r in ranks), floating=True)
    d = field.dim() - 2
    if field.shape[1] != d:
        raise ValueError(f"{name}: expected {d} channels (x, y{', z' if d == 3 else ''}) for a {d}-D field "
                         f"{shape[d + 2]}, got shape {tuple(field.shape)}")
    if finite:
        check_theta(name, field)
    return field


def _identity(size: Sequence[int], align_corners: bool, like: Tensor) -> Tensor:
    """The identity sampling grid ``(1, *size, ndim)`` (a view of the cached base grid)."""
    d = len(size)
    return base_grid(tuple(size), align_corners, dtype=like.dtype, device=like.device)[:, :d].view(1, *size, d)


def sample_field(field: Tensor, points: Tensor, *, align_corners: bool = False, padding: str = "border") -> Tensor:
    """Bilinear (trilinear) values of a field at normalised ``points``, without checks.

    Args:
        field: ``(N, C, *size)``.
        points: ``(N, *out, ndim)`` normalised ``(x, y[, z])``.

    Returns:
        ``(N, C, *out)``.
    """
    return F.grid_sample(field, points.to(field.dtype), mode="bilinear", padding_mode=padding,
                         align_corners=align_corners)


def resize_field(field: Tensor, size: Sequence[int], align_corners: bool = False) -> Tensor:
    """A field resampled (bilinear/trilinear, border values beyond the border nodes) to ``size``.

    Normalised units do not change with the resolution, so the values are not rescaled.
    """
    if tuple(field.shape[2:]) == tuple(size):
        return field
    mode = "bilinear" if field.dim() == 4 else "trilinear"
    return F.interpolate(field, size=tuple(size), mode=mode, align_corners=align_corners)


def integrate_velocity(velocity: Tensor, steps: int = 7, *, align_corners: bool = False,
                       padding: str = "border") -> Tensor:
    """The displacement of the time-1 flow of a stationary velocity field (scaling and squaring).

    ``u = v / 2^steps``, then ``steps`` times ``u <- u + u(x + u)`` (the warp composed with itself).

    Args:
        velocity: ``(N, 2, h, w)`` or ``(N, 3, d, h, w)``, normalised units.
        steps: Squarings, ``>= 0`` (0 returns ``velocity``).
        align_corners: Where the field's nodes sit, see :mod:`stnkit.coords`.
        padding: Sampling beyond the border while squaring (see the module docstring).

    Returns:
        The displacement field, same shape.
    """
    check_field("velocity", velocity)
    check_positive_int("steps", steps, minimum=0)
    check_choice("padding", padding, PADDINGS)
    u = velocity * (0.5 ** steps)
    base = _identity(velocity.shape[2:], align_corners, velocity)  # (1, *size, ndim)
    for _ in range(steps):
        u = u + sample_field(u, base + u.movedim(1, -1), align_corners=align_corners, padding=padding)
    return u


def invert_field(velocity: Tensor, steps: int = 7, *, align_corners: bool = False,
                 padding: str = "border") -> Tensor:
    """The displacement of the inverse of the warp that ``velocity`` integrates to: integrates ``-v``."""
    check_field("velocity", velocity)
    return integrate_velocity(-velocity, steps, align_corners=align_corners, padding=padding)


def compose_fields(first: Tensor, second: Tensor, *, align_corners: bool = False, padding: str = "border") -> Tensor:
    """One displacement field equal to warping by ``first``, then warping the result by ``second``.

    The same order as the matrix families' ``compose``: the output point ``p`` reads the original
    image at ``T_first(T_second(p))``, so ``u(p) = u_second(p) + u_first(p + u_second(p))``.

    Args:
        first: ``(N, ndim, *size_1)``.
        second: ``(N, ndim, *size_2)``; the result lives on its nodes.

    Returns:
        ``(N, ndim, *size_2)``.
    """
    check_field("first", first)
    check_field("second", second, first.dim() - 2)
    if first.shape[0] != second.shape[0]:
        raise ValueError(f"second: batch size {second.shape[0]} does not match first's {first.shape[0]}")
    check_choice("padding", padding, PADDINGS)
    points = _identity(second.shape[2:], align_corners, second) + second.movedim(1, -1)  # (N, *size_2, ndim)
    return second + sample_field(first, points, align_corners=align_corners, padding=padding)


def jacobian_determinant(field: Tensor, *, align_corners: bool = False) -> Tensor:
    """Determinant of the Jacobian of ``p -> p + u(p)`` at every node (finite differences).

    Central differences inside, one-sided ones on the border nodes (``torch.gradient``); exact for
    affine fields. The determinant does not depend on the units (normalised or voxels).

    Args:
        field: ``(N, 2, h, w)`` or ``(N, 3, d, h, w)``, every spatial side ``>= 2``.

    Returns:
        ``(N, h, w)`` or ``(N, d, h, w)``.
    """
    check_field("field", field)
    size = field.shape[2:]
    if min(size) < 2:
        raise ValueError(f"field: expected every spatial side >= 2 for finite differences, got shape {tuple(field.shape)}")
    d = len(size)
    spacing = [2.0 / (n - 1) if align_corners else 2.0 / n for n in size]  # per tensor axis (z,) y, x
    dims = tuple(range(1, d + 1))
    # j[i][k] = d(p + u)_i / d x_k with components and axes both in (x, y, z) order
    j = []
    for i in range(d):
        grads = torch.gradient(field[:, i], spacing=spacing, dim=dims, edge_order=1)  # per tensor axis
        row = list(reversed(grads))  # (d/dx, d/dy[, d/dz])
        row[i] = row[i] + 1
        j.append(row)
    if d == 2:
        return j[0][0] * j[1][1] - j[0][1] * j[1][0]
    return (j[0][0] * (j[1][1] * j[2][2] - j[1][2] * j[2][1])
            - j[0][1] * (j[1][0] * j[2][2] - j[1][2] * j[2][0])
            + j[0][2] * (j[1][0] * j[2][1] - j[1][1] * j[2][0]))


def folding_fraction(field: Tensor, *, align_corners: bool = False) -> Tensor:
    """Share of nodes where the warp folds: Jacobian determinant ``<= 0``; ``(N,)``, in ``[0, 1]``."""
    det = jacobian_determinant(field, align_corners=align_corners)
    return (det <= 0).flatten(1).to(field.dtype).mean(1)


def _voxel_scale(field: Tensor, align_corners: bool) -> Tensor:
    """Voxels per normalised unit along each tensor axis, ``(1, ndim, 1, ...)`` in tensor-axis order."""
    size = field.shape[2:]
    scale = [(n - 1) / 2 if align_corners else n / 2 for n in size]
    return torch.tensor(scale, dtype=field.dtype, device=field.device).view(1, -1, *([1] * len(size)))


def to_voxel(field: Tensor, *, align_corners: bool = False, convention: str = "monai") -> Tensor:
    """Our normalised field -> a voxel-unit displacement field of MONAI or VoxelMorph.

    Args:
        field: ``(N, ndim, *size)``, channel 0 = x.
        align_corners: The convention ``field`` is used with.
        convention: ``"monai"`` or ``"voxelmorph"`` (the same units and axis order).

    Returns:
        ``(N, ndim, *size)``, channel ``i`` along tensor axis ``2 + i``, in voxels.
    """
    check_field("field", field, finite=False)
    check_choice("convention", convention, CONVENTIONS)
    return field.flip(1) * _voxel_scale(field, align_corners)


def from_voxel(ddf: Tensor, *, align_corners: bool = False, convention: str = "monai") -> Tensor:
    """Inverse of :func:`to_voxel`: a MONAI/VoxelMorph voxel-unit field -> our normalised field."""
    check_field("ddf", ddf, finite=False)
    check_choice("convention", convention, CONVENTIONS)
    return (ddf / _voxel_scale(ddf, align_corners)).flip(1)
