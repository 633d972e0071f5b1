"""MNIST digits extruded into volumes at a random 3-D pose (the paper's 3-D experiment, appendix).

Each sample is a 28x28 digit extruded along depth into a slab (:func:`extrude`) and placed in a
``size``^3 volume (:func:`render`) by one 3-D affine warp (``affine3d``, :func:`stnkit.warp`): a
single ``grid_sample`` per batch reads the small slab ``(N, 1, T, 28, 28)`` at every voxel of the
output volume, so nothing of size ``size``^3 exists before it is drawn.

Geometry, in the normalised coordinates of the volume (:mod:`stnkit.coords`: ``[-1, 1]`` per axis,
last dimension ``(x, y, z)``, x along width, y along height (down), z along depth):

* the digit, at scale 1, is a square of side :data:`DIGIT_SIDE` (half the volume's side: 30 voxels
  of 60, about MNIST's own 28 pixels) and a slab :func:`slab_thickness` voxels deep (a sixth of the
  side rounded to an even count: 10 voxels of 60, 4 of 24), centred in the volume;
* the pose (:func:`draw_poses`) rotates it by an angle uniform in +-:data:`MAX_ANGLE` degrees about
  an axis uniform on the sphere (right-handed in ``(x, y, z)``: about +z a positive angle turns x
  toward y, clockwise on screen), scales it by a factor uniform in :data:`SCALE`, and moves its
  centre by a shift uniform in +-:data:`SHIFT` on each axis. At 45 degrees the digit is still
  readable from the front once un-rotated; the largest scale and shift can clip a digit's corner.

Training volumes draw a fresh order and fresh poses every epoch from a generator seeded by
``(seed, epoch)``; the test volumes' poses are drawn once from a constant seed, so the test set is
fixed whatever the run's seed. Volumes are rendered per batch, never stored (10,000 of 60^3 in
float32 would take 8.6 GB).

Example:
    >>> import torch
    >>> from stnkit.experiments.data import Digits
    >>> digits = Digits(torch.full((5, 28, 28), 255, dtype=torch.uint8), torch.arange(5), "toy")
    >>> x, y = next(DigitVolumes(digits, size=24, train=False).batches(0, 4))
    >>> tuple(x.shape), y.tolist()
    ((4, 1, 24, 24, 24), [0, 1, 2, 3])
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ... import warp
from ..._validate import check_positive_int, check_tensor
from .datasets import check_rank_split, derive_seed
from .sources import Digits

#: Side of the digit's square at scale 1, as a fraction of the volume's side.
DIGIT_SIDE = 0.5
#: Largest rotation angle, degrees.
MAX_ANGLE = 45.0
#: Range of the scale factor.
SCALE = (0.8, 1.2)
#: Largest shift of the digit's centre per axis, normalised units (a quarter of the volume's side).
SHIFT = 0.25
#: Smallest volume side (the slab is at least 2 voxels deep and the digit 4 voxels wide).
MIN_SIZE = 8
#: Seed of the fixed test poses (independent of the run's seed).
TEST_SEED = 2015


def slab_thickness(size: int) -> int:
    """Depth of the digit's slab in voxels of a ``size``^3 volume: a sixth of ``size`` rounded to an
    even count (so the slab sits on whole voxels when centred), at least 2: 10 at 60, 4 at 24."""
    return max(2, 2 * round(size / 12))


@dataclass(frozen=True)
class Poses:
    """Poses of ``n`` digits (see the module docs).

    Attributes:
        axis: ``(n, 3)`` unit rotation axes ``(x, y, z)``.
        angle: ``(n,)`` degrees.
        scale: ``(n,)`` size factors.
        shift: ``(n, 3)`` the digit centre's place, normalised units ``(x, y, z)``.
    """

    axis: Tensor
    angle: Tensor
    scale: Tensor
    shift: Tensor

    def __len__(self) -> int:
        return int(self.angle.shape[0])

    def take(self, index: Tensor) -> Poses:
        """The poses at ``index`` ``(m,)``."""
        return Poses(self.axis[index], self.angle[index], self.scale[index], self.shift[index])

    @staticmethod
    def identity(n: int, dtype: torch.dtype = torch.float64) -> Poses:
        """``n`` poses that place the digit unrotated, at scale 1, in the centre."""
        z = torch.zeros(n, dtype=dtype)
        axis = torch.zeros(n, 3, dtype=dtype)
        axis[:, 2] = 1
        return Poses(axis, z, torch.ones(n, dtype=dtype), torch.zeros(n, 3, dtype=dtype))


def draw_poses(n: int, generator: torch.Generator) -> Poses:
    """``n`` random poses (float64), all randomness from ``generator`` (see the module docs)."""
    check_positive_int("n", n, minimum=0)
    axis = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    axis = axis / axis.norm(dim=1, keepdim=True).clamp_min(1e-12)  # (n, 3) uniform on the sphere
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)  # (n, 5) angle, scale, shift x/y/z
    angle = (2 * u[:, 0] - 1) * MAX_ANGLE
    scale = SCALE[0] + (SCALE[1] - SCALE[0]) * u[:, 1]
    return Poses(axis, angle, scale, (2 * u[:, 2:] - 1) * SHIFT)


def rotation_matrix(axis: Tensor, angle: Tensor) -> Tensor:
    """Rotation matrices ``(n, 3, 3)`` by ``angle`` ``(n,)`` degrees about unit ``axis`` ``(n, 3)``
    (Rodrigues, right-handed in ``(x, y, z)``)."""
    a = torch.deg2rad(angle)[:, None, None]  # (n, 1, 1)
    x, y, z = axis.unbind(1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], 1).view(-1, 3, 3)  # (n, 3, 3) cross-product matrix
    eye = torch.eye(3, dtype=axis.dtype, device=axis.device).expand_as(k)
    return eye + torch.sin(a) * k + (1 - torch.cos(a)) * (k @ k)


def pose_theta(poses: Poses, size: int, thickness: int | None = None) -> Tensor:
    """``affine3d`` theta ``(n, 12)`` mapping a point of the ``size``^3 volume to the point of the slab
    ``(T, 28, 28)`` it shows (both normalised), for ``poses``.

    The forward map places a slab point ``o`` (normalised to the digit: the digit spans
    ``DIGIT_SIDE`` on x and y, the slab ``T / size`` on z, around 0) at ``scale * R o + shift``; theta
    is its inverse, scaled to the slab's own normalised coordinates.
    """
    size = check_positive_int("size", size, minimum=MIN_SIZE)
    t = slab_thickness(size) if thickness is None else check_positive_int("thickness", thickness)
    rotation = rotation_matrix(poses.axis, poses.angle)  # (n, 3, 3) slab -> volume
    half = torch.tensor([DIGIT_SIDE, DIGIT_SIDE, t / size], dtype=rotation.dtype)  # slab half-extents
    a = rotation.transpose(1, 2) / poses.scale[:, None, None] / half[:, None]  # (n, 3, 3) volume -> slab
    b = -(a @ poses.shift.to(a.dtype)[:, :, None])  # (n, 3, 1)
    return torch.cat([a, b], 2).flatten(1)  # (n, 12) row-major 3 x 4


def extrude(digits: Tensor, thickness: int) -> Tensor:
    """The slab of each digit: ``uint8 (n, H, W)`` -> float32 ``(n, 1, thickness, H, W)`` in [0, 1]."""
    check_tensor("digits", digits, ndim=3, shape="(n, H, W)")
    thickness = check_positive_int("thickness", thickness)
    x = digits.float().div(255) if not digits.is_floating_point() else digits.float()
    return x[:, None, None].expand(-1, 1, thickness, -1, -1).contiguous()  # (n, 1, T, H, W)


def render(digits: Tensor, poses: Poses, size: int) -> Tensor:
    """Volumes ``(n, 1, size, size, size)`` float32: each digit's slab at its pose (one warp per call).

    Args:
        digits: ``uint8 (n, 28, 28)`` (or float in [0, 1]).
        poses: ``n`` poses.
        size: The volume's side, at least :data:`MIN_SIZE`.
    """
    size = check_positive_int("size", size, minimum=MIN_SIZE)
    if len(poses) != len(digits):
        raise ValueError(f"poses: expected one pose per digit ({len(digits)}), got {len(poses)}")
    t = slab_thickness(size)
    theta = pose_theta(poses, size, t).float()  # (n, 12)
    return warp(extrude(digits, t), theta, "affine3d", (size, size, size))  # (n, 1, S, S, S)


class DigitVolumes:
    """Digits at random 3-D poses in ``size``^3 volumes, served in batches (see the module docs).

    Args:
        digits: The source images (:class:`~stnkit.experiments.data.Digits`).
        size: The volume's side (at least :data:`MIN_SIZE`).
        train: Fresh order and poses every epoch (``True``) or the fixed test poses, in order.
        seed: Seeds the training epochs (ignored for the test set).
        limit: Keep the first ``limit`` images.

    ``batches`` yields ``x`` float32 ``(n, 1, size, size, size)`` in [0, 1] and ``y`` int64 ``(n,)``.
    """

    def __init__(
        self, digits: Digits, *, size: int = 60, train: bool = True, seed: int = 0, limit: int | None = None
    ) -> None:
        if limit is not None:
            check_positive_int("limit", limit)
        self.size = check_positive_int("size", size, minimum=MIN_SIZE)
        self.images = digits.images[:limit]  # (n, 28, 28) uint8
        self.labels = digits.labels[:limit]  # (n,)
        self.source, self.train = digits.source, bool(train)
        self.seed = check_positive_int("seed", seed, minimum=0)
        self._fixed = (
            None
            if self.train
            else draw_poses(len(self.labels), torch.Generator().manual_seed(derive_seed("mnist3d-test", TEST_SEED)))
        )

    def __len__(self) -> int:
        return len(self.labels)

    def plan(self, epoch: int) -> tuple[Tensor, Poses]:
        """``(order (n,), poses)`` of ``epoch``: pose ``j`` goes with the ``j``-th sample of the order."""
        if self._fixed is not None:
            return torch.arange(len(self)), self._fixed
        generator = torch.Generator().manual_seed(derive_seed("mnist3d-train", self.seed, epoch))
        order = torch.randperm(len(self), generator=generator)
        return order, draw_poses(len(self), generator)

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's part of each global batch of ``epoch`` (split as ``DistortedDigits.batches``)."""
        check_rank_split(batch_size, rank, world_size)
        order, poses = self.plan(epoch)
        for start in range(0, len(self), batch_size):
            positions = torch.tensor_split(torch.arange(start, min(start + batch_size, len(self))), world_size)[rank]
            index = order[positions]
            yield render(self.images[index], poses.take(positions), self.size), self.labels[index]


__all__ = [
    "DIGIT_SIDE",
    "DigitVolumes",
    "MAX_ANGLE",
    "Poses",
    "SCALE",
    "SHIFT",
    "draw_poses",
    "extrude",
    "pose_theta",
    "render",
    "rotation_matrix",
    "slab_thickness",
]
