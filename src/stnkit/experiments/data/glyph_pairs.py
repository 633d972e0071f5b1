"""Two glyphs on a large cluttered canvas: the offline fine-grained task of the parallel-attention
experiment (issue 10; the paper's CUB-200 experiment has no offline data).

Each sample is a ``canvas x canvas`` image (default 96x96) holding two ``28 x 28`` digits (MNIST or
Fashion-MNIST), one at a uniformly random whole-pixel position in the left half, one in the right
half (so they never overlap: well separated), over ``patches`` clutter patches of
``patch_size x patch_size`` pixels cut from other digits at random positions. Overlaps keep the
brighter pixel. The label depends on both glyphs: the left digit's label, plus 10 when the right
digit's label is 5 or more (20 classes). It is additive in the two parts (a linear classifier on
concatenated part features can read it), and unlike the sum of the two digits (MNIST addition, 19
classes) each label names the left digit directly, so a small CPU budget learns it: with the sum,
every model of the comparison stayed at chance (90% error) after 2 epochs of 3,000 canvases.

Every random draw of an epoch comes from one generator seeded by ``(seed, epoch)``, drawn in a fixed
order for all samples, so sample ``j``'s draw is a function of ``(seed, epoch, j)`` whatever the batch
size or the number of ranks. The test split is drawn once from its own seed and cached.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from ..._validate import check_positive_int
from .datasets import derive_seed
from .sources import Digits, load_digits

GLYPH = 28


class GlyphPairs:
    """One split of the two-glyph task, served in (rank-split) batches.

    Args:
        split: ``"train"`` or ``"test"``.
        name: ``"mnist"`` or ``"fashion-mnist"``.
        data_dir, download: See :func:`stnkit.experiments.data.load_digits`.
        seed: Training seed. limit: Samples per epoch (default: the split's digit count).
        canvas: Canvas side (at least ``2 * 28``). patches, patch_size: Clutter.
        test_seed: Seed of the fixed test draw. digits: Already loaded :class:`Digits`.
    """

    num_classes = 20
    channels = 1

    def __init__(
        self,
        split: str = "train",
        name: str = "mnist",
        data_dir: str | None = None,
        download: bool = False,
        seed: int = 0,
        limit: int | None = None,
        canvas: int = 96,
        patches: int = 16,
        patch_size: int = 6,
        test_seed: int = 1234,
        digits: Digits | None = None,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
        self.split, self.seed, self.test_seed = split, seed, test_seed
        self.canvas = check_positive_int("canvas", canvas, minimum=2 * GLYPH)
        self.patches = check_positive_int("patches", patches, minimum=0)
        self.patch_size = check_positive_int("patch_size", patch_size)
        if self.patch_size > GLYPH:
            raise ValueError(f"patch_size: expected at most {GLYPH}, got {patch_size}")
        self.digits = digits if digits is not None else load_digits(name, split, data_dir=data_dir, download=download)
        self.images = self.digits.images.float() / 255  # (M, 28, 28)
        self.length = len(self.images) if limit is None else min(check_positive_int("limit", limit), len(self.images))
        self._test: tuple[Tensor, Tensor] | None = None

    @property
    def size(self) -> tuple[int, int]:
        return (self.canvas, self.canvas)

    def __len__(self) -> int:
        return self.length

    def draw(self, n: int, generator: torch.Generator) -> dict[str, Tensor]:
        """Everything random about ``n`` samples, drawn in a fixed order from ``generator``."""
        m, c, half, p = len(self.images), self.canvas, self.canvas // 2, self.patches
        return {
            "glyphs": torch.randint(m, (n, 2), generator=generator),  # (n, 2): left, right digit
            "y": torch.randint(c - GLYPH + 1, (n, 2), generator=generator),  # (n, 2): top rows
            "x": torch.stack(
                [
                    torch.randint(half - GLYPH + 1, (n,), generator=generator),
                    half + torch.randint(c - half - GLYPH + 1, (n,), generator=generator),
                ],
                1,
            ),
            "sources": torch.randint(m, (n, p), generator=generator),  # (n, P): clutter digits
            "cut": torch.randint(4, GLYPH - 4 - self.patch_size + 1, (n, p, 2), generator=generator),  # inked centre
            "at": torch.randint(c - self.patch_size + 1, (n, p, 2), generator=generator),  # (n, P, (y, x))
        }

    def render(self, draw: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``x (n, 1, canvas, canvas)`` float32 in [0, 1] and ``y (n,)`` int64 of a draw."""
        n, s = draw["glyphs"].shape[0], self.patch_size
        canvas = torch.zeros(n, self.canvas * self.canvas)  # (n, H*W), flat
        if self.patches:
            r = torch.arange(s)
            src = self.images[draw["sources"]]  # (n, P, 28, 28)
            rows = (draw["cut"][..., 0, None] + r).unsqueeze(-1)  # (n, P, s, 1)
            cols = (draw["cut"][..., 1, None] + r).unsqueeze(-2)  # (n, P, 1, s)
            pieces = src.gather(2, rows.expand(*rows.shape[:2], s, GLYPH)).gather(3, cols.expand(*cols.shape[:2], s, s))
            self._paste(canvas, pieces, draw["at"][..., 0], draw["at"][..., 1])  # (n, P, s, s)
        self._paste(canvas, self.images[draw["glyphs"]], draw["y"], draw["x"])  # (n, 2, 28, 28)
        pair = self.digits.labels[draw["glyphs"]]  # (n, 2): left, right digit labels
        labels = pair[:, 0] + 10 * (pair[:, 1] >= 5).long()  # (n,)
        return canvas.view(n, 1, self.canvas, self.canvas), labels

    def _paste(self, canvas: Tensor, pieces: Tensor, top: Tensor, left: Tensor) -> None:
        """Max-pastes ``pieces (n, P, h, w)`` with top-left corners ``(top, left) (n, P)`` into ``canvas (n, H*W)``."""
        n, p, h, w = pieces.shape
        index = (
            (top[..., None, None] + torch.arange(h).view(h, 1)) * self.canvas + left[..., None, None] + torch.arange(w)
        )  # (n, P, h, w)
        canvas.scatter_reduce_(1, index.reshape(n, -1), pieces.reshape(n, -1), "amax")

    def test_draw(self) -> dict[str, Tensor]:
        """The parameters of the fixed test set (:meth:`draw` from the test seed), e.g. the digits' positions."""
        return self.draw(self.length, torch.Generator().manual_seed(derive_seed("glyph-pairs test", self.test_seed)))

    def _test_tensors(self) -> tuple[Tensor, Tensor]:
        if self._test is None:
            self._test = self.render(self.test_draw())
        return self._test

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yields this rank's contiguous chunk of each global batch of ``batch_size`` (as
        :meth:`stnkit.experiments.data.DistortedDigits.batches`)."""
        check_positive_int("batch_size", batch_size)
        check_positive_int("world_size", world_size)
        if not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"rank: expected an int in [0, {world_size - 1}], got {rank!r}")
        if self.split == "train":
            draw = self.draw(self.length, torch.Generator().manual_seed(derive_seed("glyph-pairs", self.seed, epoch)))
        for start in range(0, self.length, batch_size):
            positions = torch.tensor_split(torch.arange(start, min(start + batch_size, self.length)), world_size)[rank]
            if self.split == "train":
                yield self.render({k: v[positions] for k, v in draw.items()})
            else:
                x, y = self._test_tensors()
                yield x[positions], y[positions]
