"""MNIST digit sequences: the offline stand-in for SVHN house numbers (multi-digit recognition).

A sample is 1 to 5 MNIST digits side by side (a strip), each with its own jitter (shift and size),
and the whole strip rotated, scaled and placed at random on a square canvas (64x64 by default). The
"loose" setting is a 128x128 canvas with the strip at the **same pixel scale**: more context, not a
bigger strip (the analogue of the paper's 128px SVHN crops).

Labels are ``(5,)`` int64 per sample: the digits from the left, then ``10`` ("none") for the empty
positions. All randomness is drawn from explicit generators: the training split from one seeded by
``(seed, epoch)`` (sample ``j`` of the epoch gets the ``j``-th draw), the test split once from one
seeded by ``test_seed`` (independent of the training seed), cached, in order.

Example:
    >>> import torch
    >>> from stnkit.experiments.data import Digits
    >>> from stnkit.experiments.data.sequences import DigitSequences
    >>> digits = Digits(torch.zeros(10, 28, 28, dtype=torch.uint8), torch.arange(10), "zeros")
    >>> data = DigitSequences("train", digits=digits)
    >>> x, y = next(data.batches(epoch=0, batch_size=4))
    >>> tuple(x.shape), tuple(y.shape)
    ((4, 1, 64, 64), (4, 5))
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..._validate import check_choice, check_positive_int
from ...functional import warp
from ._geometry import similarity_theta
from .datasets import TEST_SEED, _check_int, derive_seed
from .sources import SPLITS, Digits, load_digits

#: Label of an empty position.
NONE = 10
#: Centre-to-centre distance of neighbouring digits in the strip, in MNIST pixels.
SPACING = 18.0


class DigitSequences:
    """One split of MNIST digit sequences, served in (rank-split) batches like ``DistortedDigits``.

    Args:
        split: ``"train"`` or ``"test"`` (the source digits of that split).
        name: Source digits, ``"mnist"`` or ``"fashion-mnist"``.
        data_dir, download: See :func:`stnkit.experiments.data.load_digits`.
        seed: Training seed.
        limit: Number of sequences per epoch (default: one per source digit of the split).
        canvas: Canvas side in pixels (64; 128 is the loose setting at the same pixel scale).
        positions: Maximum number of digits (5).
        scale: Range of the strip's scale (MNIST pixel -> canvas pixel).
        angle: Range of the strip's rotation in degrees.
        jitter: Maximum per-digit shift ``(x, y)`` in MNIST pixels; each digit's size varies by
            ``1 +- jitter_scale``.
        test_seed: Seed of the test split's fixed draw.
        digits: Already loaded :class:`Digits` to use instead of loading ``name``.
    """

    def __init__(
        self,
        split: str = "train",
        name: str = "mnist",
        data_dir: str | None = None,
        download: bool = False,
        seed: int = 0,
        limit: int | None = None,
        canvas: int = 64,
        positions: int = 5,
        scale: tuple[float, float] = (0.45, 0.6),
        angle: tuple[float, float] = (-15.0, 15.0),
        jitter: tuple[float, float] = (2.0, 3.0),
        jitter_scale: float = 0.1,
        test_seed: int = TEST_SEED,
        digits: Digits | None = None,
    ) -> None:
        self.split = check_choice("split", split, SPLITS)
        self.digits = digits if digits is not None else load_digits(name, split, data_dir=data_dir, download=download)
        self.seed, self.test_seed = _check_int("seed", seed), _check_int("test_seed", test_seed)
        self.n = len(self.digits) if limit is None else min(check_positive_int("limit", limit), len(self.digits))
        self.canvas = check_positive_int("canvas", canvas, minimum=8)
        self.positions = check_positive_int("positions", positions)
        self.scale, self.angle, self.jitter, self.jitter_scale = scale, angle, jitter, float(jitter_scale)
        self._test: tuple[Tensor, Tensor] | None = None

    size = property(lambda self: (self.canvas, self.canvas))
    channels = 1

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        return f"DigitSequences({self.split!r}, n={self.n}, canvas={self.canvas}, source={self.digits.source!r})"

    # -- drawing ---------------------------------------------------------------------------------
    def make_params(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Every random choice of ``n`` samples (lengths, digits, jitters, placement)."""
        p, g = self.positions, generator

        def uniform(shape: tuple[int, ...], low: float, high: float) -> Tensor:
            return low + (high - low) * torch.rand(shape, generator=g)

        length = torch.randint(1, p + 1, (n,), generator=g)
        index = torch.randint(0, max(len(self.digits), 1), (n, p), generator=g)
        jx, jy = uniform((n, p), -self.jitter[0], self.jitter[0]), uniform((n, p), -self.jitter[1], self.jitter[1])
        js = uniform((n, p), 1 - self.jitter_scale, 1 + self.jitter_scale)
        angle, scale = uniform((n,), *self.angle), uniform((n,), *self.scale)
        # The strip's half extents on the canvas; its centre is drawn where the strip stays inside.
        a = torch.deg2rad(angle)
        half_w, half_h = scale * (SPACING * length / 2 + 4), scale * 14.0
        ext_x = half_w * a.cos().abs() + half_h * a.sin().abs()
        ext_y = half_w * a.sin().abs() + half_h * a.cos().abs()
        room_x, room_y = (self.canvas / 2 - ext_x).clamp(min=0), (self.canvas / 2 - ext_y).clamp(min=0)
        ox, oy = uniform((n,), -1, 1) * room_x, uniform((n,), -1, 1) * room_y
        return {
            "length": length,
            "index": index,
            "jx": jx,
            "jy": jy,
            "js": js,
            "angle": angle,
            "scale": scale,
            "ox": ox,
            "oy": oy,
        }

    def render(self, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Images ``(n, 1, canvas, canvas)`` in [0, 1] and labels ``(n, positions)`` of ``params``."""
        length, index = params["length"], params["index"]
        n, p = index.shape
        a = torch.deg2rad(params["angle"])
        cos, sin, s = a.cos(), a.sin(), params["scale"]
        images = self.digits.images[index.reshape(-1)].reshape(n * p, 1, 28, 28).float() / 255  # (n*p, 1, 28, 28)
        k = torch.arange(p, dtype=torch.float32)
        # Digit centres in strip pixels (strip centre = 0), then on the canvas: s R u + offset.
        ux = (k - (length[:, None] - 1) / 2) * SPACING + params["jx"]  # (n, p)
        uy = params["jy"]
        cx = s[:, None] * (cos[:, None] * ux + sin[:, None] * uy) + params["ox"][:, None]
        cy = s[:, None] * (-sin[:, None] * ux + cos[:, None] * uy) + params["oy"][:, None]
        theta = similarity_theta(
            params["angle"][:, None].expand(n, p).reshape(-1),
            (s[:, None] * params["js"]).reshape(-1),
            cx.reshape(-1),
            cy.reshape(-1),
            self.size,
        )  # (n*p, 6)
        placed = warp(images, theta, "affine", size=self.size).reshape(n, p, *self.size)  # (n, p, S, S)
        present = k[None, :] < length[:, None]  # (n, p)
        x = (placed * present[:, :, None, None]).amax(dim=1, keepdim=True).clamp(0, 1)  # (n, 1, S, S)
        labels = torch.where(present, self.digits.labels[index], torch.full_like(index, NONE))
        return x, labels

    def _test_tensors(self) -> tuple[Tensor, Tensor]:
        if self._test is None:
            generator = torch.Generator().manual_seed(derive_seed("test", "sequences", self.canvas, self.test_seed))
            self._test = self.render(self.make_params(self.n, generator))
        return self._test

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """This rank's chunk of each global batch of an epoch (see ``DistortedDigits.batches``).

        Yields:
            ``x`` float32 ``(n, 1, canvas, canvas)`` in [0, 1] and ``y`` int64 ``(n, positions)``.
        """
        _check_int("epoch", epoch)
        check_positive_int("batch_size", batch_size)
        check_positive_int("world_size", world_size)
        if not isinstance(rank, int) or isinstance(rank, bool) or not 0 <= rank < world_size:
            raise ValueError(f"rank: expected an int in [0, {world_size - 1}] (world_size={world_size}), got {rank!r}")
        if self.split == "train":
            params = self.make_params(self.n, torch.Generator().manual_seed(derive_seed("train", self.seed, epoch)))
        else:
            test_x, test_y = self._test_tensors()
        for start in range(0, self.n, batch_size):
            positions = torch.tensor_split(torch.arange(start, min(start + batch_size, self.n)), world_size)[rank]
            if self.split == "train":
                yield self.render({k: v[positions] for k, v in params.items()})
            else:
                yield test_x[positions], test_y[positions]
