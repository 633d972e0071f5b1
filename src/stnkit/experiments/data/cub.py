"""CUB-200-2011 (Wah et al. 2011): 11,788 bird photographs of 200 species, the paper's Table 3.

The reader expects the layout of ``CUB_200_2011.tgz``: a folder ``CUB_200_2011/`` holding
``images.txt`` (``<id> <path>``), ``image_class_labels.txt`` (``<id> <class>``, 1-based),
``train_test_split.txt`` (``<id> <1 = train, 0 = test>``), ``bounding_boxes.txt`` (``<id> <x> <y>
<width> <height>``, pixels) and ``images/<path>``. :func:`find_cub` looks in ``root``, then
``$STNKIT_CUB_DIR``, then the cache (``$STNKIT_CACHE_DIR/cub``); it extracts the archive if only
the archive is there and downloads it (MD5-checked) only when asked to.

Images are decoded with Pillow inside ``DataLoader`` workers: the shorter side is resized to
``resize``; training images get a random ``size x size`` crop and a random horizontal flip drawn
from a generator seeded by ``(seed, epoch, index)`` (the same in any worker, any number of
workers), evaluation images the centre crop. The boxes come with every sample, mapped into the
crop, for scoring localisation only; nothing trains on them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..._validate import check_choice, check_positive_int
from .datasets import derive_seed
from .download import download
from .sources import cache_dir

log = logging.getLogger(__name__)

ARCHIVE, FOLDER = "CUB_200_2011.tgz", "CUB_200_2011"
URLS = ("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",)
MD5 = "97eceeb196236b17998738112f37df78"
NUM_CLASSES = 200
ENV_DIR = "STNKIT_CUB_DIR"
_INDEX_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "bounding_boxes.txt")


class CubArchiveError(ValueError):
    """The CUB archive is truncated or corrupt (delete it and download it again)."""


def find_cub(root: str | os.PathLike | None = None, download_missing: bool = False) -> Path:
    """The ``CUB_200_2011`` folder: found, extracted from ``CUB_200_2011.tgz``, or downloaded.

    Raises:
        FileNotFoundError: nothing found and ``download_missing`` is false (says where it looked).
        CubArchiveError: the archive is truncated or corrupt.
        stnkit.experiments.data.DownloadError: every mirror failed or gave another MD5.
    """
    base = Path(root or os.environ.get(ENV_DIR) or cache_dir() / "cub").expanduser()
    for folder in (base / FOLDER, base):
        if (folder / "images.txt").is_file():
            return folder
    archive = base / ARCHIVE
    if not archive.is_file():
        if not download_missing:
            raise FileNotFoundError(
                f"data_dir: no CUB-200-2011 in {str(base)!r} (expected {FOLDER}/images.txt or "
                f"{ARCHIVE}); pass --download to fetch it ({URLS[0]})"
            )
        download(URLS, archive, MD5)
    return extract(archive, base)


def extract(archive: Path, dest: Path) -> Path:
    """Extracts ``archive`` into ``dest / CUB_200_2011`` through a temporary folder (a failure leaves
    nothing half-extracted) and returns that folder."""
    tmp = Path(tempfile.mkdtemp(prefix=".cub-", dir=dest))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(tmp, filter="data")  # "data": no absolute paths, links out or devices
        found = tmp / FOLDER
        if not (found / "images.txt").is_file():
            raise CubArchiveError(
                f"archive: {str(archive)!r} holds no {FOLDER}/images.txt; not the CUB-200-2011 archive"
            )
        os.replace(found, dest / FOLDER)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise CubArchiveError(
            f"archive: {str(archive)!r} is truncated or corrupt ({type(err).__name__}: {err}); "
            f"delete it and download it again"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest / FOLDER


@dataclass(frozen=True)
class CubIndex:
    """The archive's index. Attributes: ``paths`` (relative to ``images/``), ``labels`` int64 (N,)
    0-based, ``train`` bool (N,), ``boxes`` float (N, 4) ``(x0, y0, x1, y1)`` pixels."""

    paths: list[str]
    labels: Tensor
    train: Tensor
    boxes: Tensor


def read_index(folder: Path) -> CubIndex:
    """Reads and cross-checks the four index files (every id in each, labels 1..200, split 0/1).

    Raises:
        FileNotFoundError / ValueError: naming the file and the line.
    """
    tables = []
    for name in _INDEX_FILES:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"data_dir: {str(path)!r} is missing; expected the {FOLDER} layout")
        rows = {}
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                key, _, rest = line.strip().partition(" ")
                if not rest or key in rows:
                    raise ValueError(f"{path}: line {number}: expected '<id> <value>' with a new id, got {line!r}")
                rows[key] = rest.strip()
        tables.append(rows)
    ids = list(tables[0])
    for name, rows in zip(_INDEX_FILES[1:], tables[1:], strict=True):
        if set(rows) != set(ids):
            raise ValueError(
                f"{folder / name}: expected the {len(ids)} ids of images.txt, got {len(rows)} "
                f"(differing: {sorted(set(rows) ^ set(ids))[:5]})"
            )
    try:
        labels = torch.tensor([int(tables[1][i]) for i in ids]) - 1  # 1-based in the file
        train = [int(tables[2][i]) for i in ids]
        boxes = torch.tensor([[float(v) for v in tables[3][i].split()] for i in ids]).reshape(len(ids), 4)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"data_dir: a malformed index file in {str(folder)!r}: {err}") from None
    if len(ids) and (int(labels.min()) < 0 or int(labels.max()) >= NUM_CLASSES):
        raise ValueError(
            f"image_class_labels.txt: expected classes 1..{NUM_CLASSES}, got "
            f"{int(labels.min()) + 1}..{int(labels.max()) + 1}"
        )
    if set(train) - {0, 1}:
        raise ValueError(f"train_test_split.txt: expected 1 (train) or 0 (test), got {sorted(set(train) - {0, 1})}")
    boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)  # (N, 4) x, y, w, h -> corners
    return CubIndex([tables[0][i] for i in ids], labels, torch.tensor(train, dtype=torch.bool), boxes)


class CubImages(torch.utils.data.Dataset):
    """One split of CUB-200-2011 as ``(image (3, size, size) float [0, 1], label, box (4,))`` samples.

    Args:
        folder: The ``CUB_200_2011`` folder (:func:`find_cub`).
        split: ``"train"`` (random crop + flip) or ``"test"`` (centre crop).
        size: Side of the crop (224 or 448 in Table 3).
        resize: The shorter side is resized to this first (default ``size * 8 // 7``: 256 for 224).
        seed: Seeds the augmentation with the epoch (:attr:`epoch`) and the index.
        limit: Keep the first ``limit`` images of the split.

    Raises:
        FileNotFoundError: an image listed in ``images.txt`` is missing (named).
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        split: str = "train",
        size: int = 224,
        resize: int | None = None,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.split = check_choice("split", split, ("train", "test"))
        self.size = check_positive_int("size", size)
        self.resize = check_positive_int("resize", resize if resize is not None else size * 8 // 7, minimum=size)
        self.seed, self.epoch = seed, 0
        index = read_index(self.folder)
        keep = torch.nonzero(index.train == (split == "train")).flatten()[:limit]
        self.paths = [index.paths[i] for i in keep.tolist()]
        self.labels, self.boxes = index.labels[keep], index.boxes[keep]  # (n,), (n, 4) in the original images
        missing = [p for p in self.paths if not (self.folder / "images" / p).is_file()]
        if missing:
            raise FileNotFoundError(
                f"data_dir: {len(missing)} image(s) listed in images.txt are missing from "
                f"{str(self.folder / 'images')!r}, e.g. {missing[0]!r}; re-extract the archive"
            )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor, Tensor]:
        from PIL import Image  # decoded in the DataLoader workers

        with Image.open(self.folder / "images" / self.paths[i]) as img:
            img = img.convert("RGB")
            w, h = img.size
            scale = self.resize / min(w, h)
            img = img.resize(
                (max(self.size, round(w * scale)), max(self.size, round(h * scale))), Image.Resampling.BILINEAR
            )
        width, height = img.size
        if self.split == "train":
            g = torch.Generator().manual_seed(derive_seed("cub", self.seed, self.epoch, i))
            left = int(torch.randint(width - self.size + 1, (1,), generator=g))
            top = int(torch.randint(height - self.size + 1, (1,), generator=g))
            flip = bool(torch.rand(1, generator=g) < 0.5)
        else:
            left, top, flip = (width - self.size) // 2, (height - self.size) // 2, False
        img = img.crop((left, top, left + self.size, top + self.size))
        x = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(self.size, self.size, 3)
        x = x.permute(2, 0, 1).float().div(255)  # (3, size, size)
        box = self.boxes[i] * torch.tensor([width / w, height / h, width / w, height / h])  # (4,) resized
        box = (box - torch.tensor([left, top, left, top])).clamp(0, self.size)  # (4,) in the crop
        if flip:
            x = x.flip(-1)
            box = torch.stack([self.size - box[2], box[1], self.size - box[0], box[3]])
        return x, self.labels[i], box


class CubData:
    """A split served as ``batches(epoch, batch_size, rank, world_size)`` through a ``DataLoader``
    with ``workers`` processes: training epochs in an order drawn from ``(seed, epoch)``, each
    global batch cut into ``world_size`` contiguous chunks (rank ``r`` gets chunk ``r``)."""

    def __init__(self, images: CubImages, workers: int = 0) -> None:
        self.images = images
        self.workers = check_positive_int("workers", workers, minimum=0)

    def __len__(self) -> int:
        return len(self.images)

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        check_positive_int("batch_size", batch_size)
        n = len(self.images)
        if self.images.split == "train":
            order = torch.randperm(
                n, generator=torch.Generator().manual_seed(derive_seed("cub-order", self.images.seed, epoch))
            )
        else:
            order = torch.arange(n)
        plan = [
            order[torch.tensor_split(torch.arange(s, min(s + batch_size, n)), world_size)[rank]].tolist()
            for s in range(0, n, batch_size)
        ]
        self.images.epoch = epoch  # the workers get a copy of the data set with this epoch
        loader = torch.utils.data.DataLoader(
            self.images, batch_sampler=[b for b in plan if b], num_workers=self.workers
        )
        yield from loader
