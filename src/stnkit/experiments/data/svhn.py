"""SVHN format 1 (full house-number images): reading, Goodfellow et al.'s preprocessing, caching.

An archive ``train.tar.gz`` / ``test.tar.gz`` / ``extra.tar.gz`` holds ``<split>/1.png ...`` and
``<split>/digitStruct.mat``, a MATLAB v7.3 file (HDF5) read with ``h5py``: ``digitStruct/name``
and ``digitStruct/bbox`` are (N, 1) arrays of object references; a name is a uint16 character
array, a bbox a group of ``label``, ``left``, ``top``, ``width``, ``height``, each (k, 1): the values
themselves when k = 1, else references to (1, 1) datasets. Label 10 means the digit 0.

Preprocessing (Goodfellow et al. 2014, as the paper): the union box of the digits, enlarged by 30%
in x and y, cropped and resized to 64x64 (``size=64``); random 54x54 crops in training, the centre
crop at test time (:class:`SvhnImages`). The loose setting (``size=128``) crops a box twice as large
around the same centre and resizes it to 128x128: the digits at the same pixel scale, more context.
Numbers longer than five digits are dropped and counted in a log line. The arrays are built once
and cached as ``.npy`` (written to a temporary name, then renamed) and memory-mapped afterwards.

Integrity: the archive is read to its end (a truncated or foreign file is a :class:`SvhnFormatError`),
every image ``digitStruct`` lists must be present and decodable, and the counts must match. Downloads
are checked against the SHA-256 published by docTR for ``train`` and ``test``; ``extra`` has no
published checksum, so it is checked by its structure only.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, cast

import numpy as np
import torch
from torch import Tensor

from ..._io import atomic_open
from ..._validate import check_choice, check_positive_int
from .datasets import _check_int, derive_seed
from .sources import cache_dir

logger = logging.getLogger(__name__)

SVHN_SPLITS = ("train", "test", "extra")
URL = "http://ufldl.stanford.edu/housenumbers/{split}.tar.gz"
#: SHA-256 of the archives as published by docTR (mindee/doctr, ``doctr/datasets/svhn.py``).
SHA256 = {
    "train": "4b17bb33b6cd8f963493168f80143da956f28ec406cc12f8e5745a9f91a51898",
    "test": "57ac9ceb530e4aa85b55d991be8fc49c695b3d71c6f6a88afea86549efde7fb5",
}
POSITIONS, NONE, IGNORE = 5, 10, -100


class SvhnFormatError(ValueError):
    """An archive or ``digitStruct.mat`` is truncated, foreign or not laid out as SVHN format 1."""


def read_digit_struct(source: str | Path | io.BytesIO) -> list[tuple[str, np.ndarray]]:
    """The records of a ``digitStruct.mat``: ``[(png name, boxes (k, 5) float: label, left, top, width, height)]``.

    Raises:
        SvhnFormatError: not HDF5, or no ``digitStruct/name`` and ``digitStruct/bbox`` of equal length.
    """
    import h5py

    where = getattr(source, "name", None) or "digitStruct.mat"
    try:
        f = h5py.File(source, "r")
    except OSError as err:
        raise SvhnFormatError(
            f"{where}: expected a MATLAB v7.3 (HDF5) digitStruct.mat, could not open it: {err}"
        ) from None
    with f:
        group = f.get("digitStruct")
        if not isinstance(group, h5py.Group) or "name" not in group or "bbox" not in group:
            raise SvhnFormatError(
                f"{where}: expected a 'digitStruct' group with 'name' and 'bbox' (SVHN format 1), "
                f"got keys {sorted(f.keys())}"
            )
        names, bboxes = group["name"], group["bbox"]
        if names.shape != bboxes.shape or names.dtype != h5py.ref_dtype:
            raise SvhnFormatError(
                f"{where}: expected digitStruct/name and /bbox as equal arrays of references, got "
                f"shapes {names.shape} and {bboxes.shape}, dtype {names.dtype}"
            )
        records = []
        for name_ref, box_ref in zip(names[...].reshape(-1), bboxes[...].reshape(-1), strict=True):
            name = "".join(chr(int(c)) for c in f[name_ref][...].reshape(-1))
            box = f[box_ref]
            try:
                columns = [_values(f, box[key]) for key in ("label", "left", "top", "width", "height")]
            except KeyError as err:
                raise SvhnFormatError(
                    f"{where}: bbox of {name!r} lacks {err}; expected label, left, top, width, height"
                ) from None
            records.append((name, np.stack(columns, axis=1)))  # (k, 5)
    return records


def _values(f, dataset) -> np.ndarray:
    """A bbox field: the values (k = 1) or the referenced scalars (k > 1) -> ``(k,)`` float64."""
    data = dataset[...].reshape(-1)
    if data.dtype == object or dataset.dtype.kind == "O":
        return np.array([float(f[r][...].reshape(-1)[0]) for r in data])
    return data.astype(np.float64)


def crop_box(boxes: np.ndarray, size: int) -> tuple[float, float, float, float]:
    """``(x0, y0, x1, y1)`` in image pixels: the digits' union box enlarged by 30% (x2 for ``size=128``)."""
    left, top = boxes[:, 1], boxes[:, 2]
    x0, y0 = left.min(), top.min()
    x1, y1 = (left + boxes[:, 3]).max(), (top + boxes[:, 4]).max()
    grow = 1.3 * (2 if size == 128 else 1)
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * grow / 2, (y1 - y0) * grow / 2
    return cx - hw, cy - hh, cx + hw, cy + hh


def labels_of(boxes: np.ndarray, keep_long: bool = False) -> np.ndarray | None:
    """``(5,)`` labels (10 = none; SVHN's 10 is the digit 0). More than five digits: ``None``, or with
    ``keep_long`` five ``-100`` (positions ignored; the length head's "more")."""
    digits = boxes[:, 0].astype(np.int64) % 10
    if len(digits) > POSITIONS:
        return np.full(POSITIONS, IGNORE, dtype=np.int64) if keep_long else None
    return np.concatenate([digits, np.full(POSITIONS - len(digits), NONE, dtype=np.int64)])


def preprocess_archive(
    archive: str | Path, split: str, size: int = 64, keep_long: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Reads an SVHN format-1 archive: images ``(n, 3, size, size)`` uint8 and labels ``(n, 5)`` int64.

    Numbers longer than five digits are dropped (a log line counts them), or with ``keep_long``
    kept with labels ``-100`` (the length head's "more").

    Raises:
        SvhnFormatError: truncated or foreign archive, no ``digitStruct.mat``, a listed image missing
            or not decodable, or counts that do not match.
    """
    from PIL import Image

    archive = Path(archive)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}  # reads to the end: a truncated file fails here
            mat = members.get(f"{split}/digitStruct.mat")
            if mat is None:
                raise SvhnFormatError(
                    f"{archive}: expected {split}/digitStruct.mat in an SVHN format-1 {split} "
                    f"archive, found {len(members)} other entries"
                )
            records = read_digit_struct(io.BytesIO(cast(IO[bytes], tar.extractfile(mat)).read()))
            pngs = {n for n in members if n.endswith(".png")}
            if len(pngs) != len(records):
                listed = {f"{split}/{name}" for name, _ in records}
                missing = sorted(listed - pngs)[:3]
                raise SvhnFormatError(
                    f"{archive}: digitStruct.mat lists {len(records)} images, the archive holds "
                    f"{len(pngs)} PNGs" + (f"; missing e.g. {', '.join(missing)}" if missing else "")
                )
            images, labels, dropped = [], [], 0
            for name, boxes in records:
                label = labels_of(boxes, keep_long)
                dropped += int(len(boxes) > POSITIONS)
                member = members.get(f"{split}/{name}")
                if member is None:
                    raise SvhnFormatError(f"{archive}: image {split}/{name} listed in digitStruct.mat is missing")
                try:
                    image = Image.open(io.BytesIO(cast(IO[bytes], tar.extractfile(member)).read())).convert("RGB")
                except OSError as err:
                    raise SvhnFormatError(f"{archive}: image {split}/{name} cannot be decoded: {err}") from None
                if label is None:
                    continue
                x0, y0, x1, y1 = crop_box(boxes, size)
                outer = (int(np.floor(x0)), int(np.floor(y0)), int(np.ceil(x1)), int(np.ceil(y1)))
                region = image.crop(outer)  # zero beyond the image's borders
                crop = region.resize(
                    (size, size),
                    Image.BILINEAR,  # type: ignore[attr-defined]  # no Resampling in 9.0
                    box=(x0 - outer[0], y0 - outer[1], x1 - outer[0], y1 - outer[1]),
                )
                images.append(np.asarray(crop, dtype=np.uint8).transpose(2, 0, 1))  # (3, size, size)
                labels.append(label)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise SvhnFormatError(
            f"{archive}: expected a complete SVHN format-1 .tar.gz, the file is truncated or not one: {err}"
        ) from None
    if dropped:
        logger.warning(
            "%s: %s %d number(s) longer than %d digits (of %d)",
            archive,
            "kept as 'more' (length head)" if keep_long else "dropped",
            dropped,
            POSITIONS,
            len(records),
        )
    if not images:
        raise SvhnFormatError(f"{archive}: the {split} split holds no number of 1-{POSITIONS} digits")
    return np.stack(images), np.stack(labels)


def load_svhn(
    split: str, size: int = 64, data_dir: str | Path | None = None, download: bool = False, keep_long: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The preprocessed split, memory-mapped: images ``(n, 3, size, size)`` uint8, labels ``(n, 5)`` int64.

    Looks for ``<split>.tar.gz`` in ``data_dir`` (else the cache's ``svhn/``), downloading it there
    with ``download=True``; the arrays are cached beside it as ``<split>-<size>-{images,labels}.npy``
    (``<split>-<size>-long-...`` with ``keep_long``, see :func:`preprocess_archive`).

    Raises:
        FileNotFoundError: no archive and ``download`` is off (the message says how to get it).
    """
    check_choice("split", split, SVHN_SPLITS)
    if size not in (64, 128) or isinstance(size, bool):
        raise ValueError(f"size: expected 64 or 128 (the paper's crops), got {size!r}")
    folder = Path(data_dir) if data_dir is not None else cache_dir() / "svhn"
    stem = f"{split}-{size}" + ("-long" if keep_long else "")
    images_path, labels_path = (folder / f"{stem}-{what}.npy" for what in ("images", "labels"))
    if not (images_path.exists() and labels_path.exists()):
        archive = folder / f"{split}.tar.gz"
        if not archive.exists():
            if not download:
                raise FileNotFoundError(
                    f"data_dir: no SVHN {split}.tar.gz in {folder}; "
                    f"pass --download (download=True) or put {URL.format(split=split)} there"
                )
            fetch_archive(split, archive)
        images, labels = preprocess_archive(archive, split, size, keep_long)
        for path, array in ((labels_path, labels), (images_path, images)):  # images last: they mark completion
            with atomic_open(path) as f:
                np.save(f, array)
    return np.load(images_path, mmap_mode="r"), np.load(labels_path, mmap_mode="r")


def fetch_archive(split: str, dest: Path, timeout: float = 60.0) -> Path:
    """Downloads ``<split>.tar.gz`` to ``dest`` (atomically), checking the published SHA-256 where one exists."""
    import urllib.request  # here, not at import time

    url = URL.format(split=split)
    logger.info("downloading %s to %s", url, dest)
    with atomic_open(dest) as f:
        digest = hashlib.sha256()
        with urllib.request.urlopen(url, timeout=timeout) as response:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                digest.update(chunk)
        if split in SHA256 and digest.hexdigest() != SHA256[split]:
            raise SvhnFormatError(
                f"{url}: SHA-256 {digest.hexdigest()} does not match the published {SHA256[split]}; "
                f"the download is corrupt or incomplete and was discarded"
            )
    return dest


class SvhnImages:
    """A preprocessed SVHN split served in batches: random crops (train) or the centre crop (test).

    Args:
        images, labels: From :func:`load_svhn` (memory-mapped is fine).
        split: ``"train"`` (shuffled, random crops drawn from ``(seed, epoch)``) or ``"test"``.
        crop: Side of the crops (54 of 64 as Goodfellow et al.; 108 of 128).
        seed: Training seed.
        limit: Keep the first ``limit`` samples.
    """

    channels = 3

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        split: str = "train",
        crop: int = 54,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        self.images, self.labels = images, labels
        self.split, self.crop, self.seed = split, check_positive_int("crop", crop), _check_int("seed", seed)
        self.n = len(images) if limit is None else min(check_positive_int("limit", limit), len(images))
        if crop > images.shape[-1]:
            raise ValueError(f"crop: expected at most the image side {images.shape[-1]}, got {crop}")

    size = property(lambda self: (self.crop, self.crop))

    def __len__(self) -> int:
        return self.n

    def batches(
        self, epoch: int, batch_size: int, rank: int = 0, world_size: int = 1
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yields ``x`` float32 ``(n, 3, crop, crop)`` in [0, 1] and ``y`` int64 ``(n, 5)``."""
        check_positive_int("batch_size", batch_size)
        margin = self.images.shape[-1] - self.crop
        if self.split == "train":
            g = torch.Generator().manual_seed(derive_seed("svhn", self.seed, epoch))
            order, offsets = torch.randperm(self.n, generator=g), torch.randint(0, margin + 1, (self.n, 2), generator=g)
        else:
            order, offsets = torch.arange(self.n), torch.full((self.n, 2), margin // 2)
        for start in range(0, self.n, batch_size):
            positions = torch.tensor_split(torch.arange(start, min(start + batch_size, self.n)), world_size)[rank]
            index = order[positions].numpy()
            sort = np.argsort(index)  # memory maps read faster in order
            chunk = torch.from_numpy(np.asarray(self.images[index[sort]]))[torch.from_numpy(np.argsort(sort))]
            crops = [
                img[:, oy : oy + self.crop, ox : ox + self.crop]
                for img, (oy, ox) in zip(chunk, offsets[positions].tolist(), strict=True)
            ]
            x = torch.stack(crops).float() / 255 if crops else torch.zeros(0, 3, self.crop, self.crop)
            yield x, torch.from_numpy(np.asarray(self.labels[index])).long().reshape(-1, POSITIONS)
